package certs

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/wardgate/wardgate/internal/atomicfile"
)

// File names inside a Store's directory.
const (
	KeyFile        = "key.pem"   // PKCS#8 private key, mode 0600
	CertFile       = "cert.pem"  // certificate chain, leaf first
	RootsFile      = "roots.pem" // trusted roots
	pendingKeyFile = "key.pem.pending"
)

// Store keeps the identity in a directory (STATE_DIR/identity): key.pem
// (0600), cert.pem and roots.pem. Writes are atomic (temp file, fsync,
// rename, fsync of the directory); the directory is 0700. Safe for
// concurrent use within one process.
type Store struct {
	dir string
	mu  sync.Mutex
}

// NewStore returns a store in dir. The directory is created on first write.
func NewStore(dir string) *Store { return &Store{dir: dir} }

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the path of one of the store's files.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name) }

// Exists reports whether an identity (key and certificate) is stored.
func (s *Store) Exists() bool {
	_, err1 := os.Stat(s.Path(KeyFile))
	_, err2 := os.Stat(s.Path(CertFile))
	return err1 == nil && err2 == nil
}

// CheckKeyPermissions fails with ErrKeyPermissions when path is readable
// or writable by group or others, saying which chmod to run.
func CheckKeyPermissions(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; run: chmod 600 %s", ErrKeyPermissions, path, fi.Mode().Perm(), path)
	}
	return nil
}

// Load reads the key and the chain. It fails with ErrNoIdentity when none is
// stored, with ErrKeyPermissions when the key file is group/world readable,
// and when the key does not match the certificate. A re-key interrupted
// between its two renames is completed here.
func (s *Store) Load() (crypto.Signer, []*x509.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keyPath, certPath := s.Path(KeyFile), s.Path(CertFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w (no %s)", ErrNoIdentity, certPath)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read certificate: %w", err)
	}
	chain, err := ParseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	if err := s.recoverPending(chain[0]); err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w (no %s)", ErrNoIdentity, keyPath)
	}
	if err := CheckKeyPermissions(keyPath); err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("read key: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !keyMatches(key, chain[0]) {
		return nil, nil, fmt.Errorf("%s does not match %s: re-enroll (wardgate enroll --config FILE --token TOKEN)", keyPath, certPath)
	}
	return key, chain, nil
}

// recoverPending finishes a re-key whose certificate was written but whose
// key was not yet renamed into place.
func (s *Store) recoverPending(leaf *x509.Certificate) error {
	pending := s.Path(pendingKeyFile)
	b, err := os.ReadFile(pending)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", pending, err)
	}
	if k, err := ParseKeyPEM(b); err == nil && keyMatches(k, leaf) {
		if err := os.Rename(pending, s.Path(KeyFile)); err != nil {
			return fmt.Errorf("complete interrupted re-key: %w", err)
		}
		return atomicfile.SyncDir(s.dir)
	}
	return os.Remove(pending)
}

// Save stores key and chain. The key goes first to a pending file, then
// the chain replaces cert.pem, then the key replaces key.pem: a crash at
// any point leaves a pair that Load accepts.
func (s *Store) Save(key crypto.Signer, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("save identity: empty chain")
	}
	if !keyMatches(key, chain[0]) {
		return fmt.Errorf("save identity: key does not match certificate")
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureDir(); err != nil {
		return err
	}
	// Unchanged key (renewal): only the certificate changes.
	if cur, err := os.ReadFile(s.Path(KeyFile)); err == nil {
		if k, err := ParseKeyPEM(cur); err == nil && keyMatches(k, chain[0]) {
			return atomicfile.Write(s.Path(CertFile), EncodeCertsPEM(chain), 0o644)
		}
	}
	if err := atomicfile.Write(s.Path(pendingKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(s.Path(CertFile), EncodeCertsPEM(chain), 0o644); err != nil {
		return err
	}
	if err := os.Rename(s.Path(pendingKeyFile), s.Path(KeyFile)); err != nil {
		return fmt.Errorf("save key: %w", err)
	}
	return atomicfile.SyncDir(s.dir)
}

// SaveRoots stores the trusted roots.
func (s *Store) SaveRoots(roots []*x509.Certificate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureDir(); err != nil {
		return err
	}
	return atomicfile.Write(s.Path(RootsFile), EncodeCertsPEM(roots), 0o644)
}

// LoadRoots reads the trusted roots; ErrNoIdentity when none are stored.
func (s *Store) LoadRoots() ([]*x509.Certificate, error) {
	b, err := os.ReadFile(s.Path(RootsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s)", ErrNoIdentity, s.Path(RootsFile))
	}
	if err != nil {
		return nil, err
	}
	roots, err := ParseCertsPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path(RootsFile), err)
	}
	return roots, nil
}

func (s *Store) ensureDir() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.dir, err)
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(s.dir, 0o700); err != nil {
			return fmt.Errorf("make %s private (chmod 700): %w", s.dir, err)
		}
	}
	return nil
}
