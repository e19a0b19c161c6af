package release

import (
	"archive/tar"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
	"golang.org/x/mod/semver"
)

// Errors of bundle verification, matched with errors.Is.
var (
	ErrBadBundle   = errors.New("not a valid release bundle")
	ErrUntrusted   = errors.New("the release is not signed by a pinned release key")
	ErrTampered    = errors.New("the binary does not match its signed manifest")
	ErrWrongArch   = errors.New("the release is for another architecture")
	ErrDowngrade   = errors.New("the release is not newer than the running version")
	ErrNoReleasKey = errors.New("no release key is pinned (update.release_keys)")
)

// Bundle file names: a bundle is a tar file with these three entries.
const (
	BundleManifest = "manifest.cose"   // COSE_Sign1 over the CBOR Manifest
	BundleKey      = "release-key.pem" // the signer's public key (PEM PUBLIC KEY)
	BundleBinary   = "wardgate"        // the new binary
)

// MaxBinary bounds the binary in a bundle.
const MaxBinary = 256 << 20

// Manifest is the signed description of a release.
type Manifest struct {
	Version string `cbor:"version" json:"version"` // semantic version, v1.2.3
	SHA256  string `cbor:"sha256" json:"sha256"`   // of the binary, hex
	OS      string `cbor:"os" json:"os"`           // linux
	Arch    string `cbor:"arch" json:"arch"`       // GOARCH, with the GOARM level for arm (arm/v7)
}

// Pin is a trusted release key: the key itself (from a PEM file) or only
// its SPKI SHA-256 (the key then comes from the bundle and must match).
type Pin struct {
	SPKI [32]byte
	Key  *ecdsa.PublicKey // nil for a fingerprint pin
}

// SPKIHash is the SHA-256 of a public key's SubjectPublicKeyInfo.
func SPKIHash(pub crypto.PublicKey) ([32]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(der), nil
}

// ParsePin reads one update.release_keys entry: "sha256:HEX" (the SPKI
// SHA-256, as `openssl pkey -pubin -outform der | sha256sum` prints it) or
// the path of a PEM public key (or certificate).
func ParsePin(s string) (Pin, error) {
	if h, ok := strings.CutPrefix(s, "sha256:"); ok {
		b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
		if err != nil || len(b) != 32 {
			return Pin{}, fmt.Errorf("release key %q: not sha256: and 64 hexadecimal digits", s)
		}
		var p Pin
		copy(p.SPKI[:], b)
		return p, nil
	}
	data, err := os.ReadFile(s)
	if err != nil {
		return Pin{}, fmt.Errorf("release key: %w", err)
	}
	pub, err := parsePublicKeyPEM(data)
	if err != nil {
		return Pin{}, fmt.Errorf("release key %s: %w", s, err)
	}
	h, err := SPKIHash(pub)
	if err != nil {
		return Pin{}, err
	}
	return Pin{SPKI: h, Key: pub}, nil
}

func parsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return nil, err
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("release keys must be ECDSA P-256 (ES256)")
	}
	return k, nil
}

// Bundle is a parsed, not yet verified, release bundle.
type Bundle struct {
	Manifest []byte // COSE_Sign1
	Key      []byte // PEM
	Binary   []byte
}

// ParseBundle reads a bundle (a tar file). Untrusted input: sizes are
// bounded and nothing is trusted before Verify.
func ParseBundle(data []byte) (*Bundle, error) {
	var b Bundle
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
		}
		var dst *[]byte
		limit := int64(1 << 20)
		switch h.Name {
		case BundleManifest:
			dst = &b.Manifest
		case BundleKey:
			dst = &b.Key
		case BundleBinary:
			dst, limit = &b.Binary, MaxBinary
		default:
			return nil, fmt.Errorf("%w: unexpected entry %q", ErrBadBundle, h.Name)
		}
		if h.Typeflag != tar.TypeReg || h.Size > limit || *dst != nil {
			return nil, fmt.Errorf("%w: entry %q is not a single regular file of at most %d bytes", ErrBadBundle, h.Name, limit)
		}
		v, err := io.ReadAll(io.LimitReader(tr, limit))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadBundle, err)
		}
		*dst = v
	}
	if b.Manifest == nil || b.Binary == nil {
		return nil, fmt.Errorf("%w: it must hold %s and %s", ErrBadBundle, BundleManifest, BundleBinary)
	}
	return &b, nil
}

// Verify checks b against the pinned release keys and this platform: the
// manifest is signed (COSE_Sign1, ES256) by a pinned key, the binary hashes
// to the manifest's sha256, its os and arch are osName and arch, and its
// version is newer than current (a semantic version; "dev" or another
// unparsable current version accepts any release). It returns the
// manifest.
func (b *Bundle) Verify(pins []Pin, osName, arch, current string) (Manifest, error) {
	var m Manifest
	if len(pins) == 0 {
		return m, ErrNoReleasKey
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(b.Manifest); err != nil {
		return m, fmt.Errorf("%w: manifest: %w", ErrBadBundle, err)
	}
	if alg, err := msg.Headers.Protected.Algorithm(); err != nil || alg != cose.AlgorithmES256 {
		return m, fmt.Errorf("%w: the manifest must be signed with ES256", ErrBadBundle)
	}
	kid, _ := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	var key *ecdsa.PublicKey
	for _, p := range pins {
		if !bytes.Equal(kid, p.SPKI[:]) {
			continue
		}
		key = p.Key
		if key == nil && b.Key != nil {
			k, err := parsePublicKeyPEM(b.Key)
			if err != nil {
				return m, fmt.Errorf("%w: %s: %w", ErrBadBundle, BundleKey, err)
			}
			if h, err := SPKIHash(k); err == nil && h == p.SPKI {
				key = k
			}
		}
		break
	}
	if key == nil {
		return m, fmt.Errorf("%w: signed by key sha256:%x", ErrUntrusted, kid)
	}
	v, err := cose.NewVerifier(cose.AlgorithmES256, key)
	if err != nil {
		return m, err
	}
	if err := msg.Verify(nil, v); err != nil {
		return m, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	if err := cbor.Unmarshal(msg.Payload, &m); err != nil {
		return m, fmt.Errorf("%w: manifest payload: %w", ErrBadBundle, err)
	}
	sum := sha256.Sum256(b.Binary)
	if !strings.EqualFold(hex.EncodeToString(sum[:]), m.SHA256) {
		return m, fmt.Errorf("%w: sha256 %x, manifest says %s", ErrTampered, sum, m.SHA256)
	}
	if m.OS != osName || m.Arch != arch {
		return m, fmt.Errorf("%w: the bundle is for %s/%s, this gateway is %s/%s", ErrWrongArch, m.OS, m.Arch, osName, arch)
	}
	nv, cv := canonical(m.Version), canonical(current)
	if !semver.IsValid(nv) {
		return m, fmt.Errorf("%w: version %q is not a semantic version", ErrBadBundle, m.Version)
	}
	if semver.IsValid(cv) && semver.Compare(nv, cv) <= 0 {
		return m, fmt.Errorf("%w: %s is not newer than %s (downgrades are refused)", ErrDowngrade, m.Version, current)
	}
	return m, nil
}

func canonical(v string) string {
	if v != "" && v[0] != 'v' {
		v = "v" + v
	}
	return v
}

// Sign makes a bundle of binary for m (whose SHA256 it fills in) signed
// with key (ECDSA P-256). `make release` uses it through
// scripts/releasesign.
func Sign(key *ecdsa.PrivateKey, m Manifest, binary []byte) ([]byte, error) {
	sum := sha256.Sum256(binary)
	m.SHA256 = hex.EncodeToString(sum[:])
	payload, err := cbor.Marshal(m)
	if err != nil {
		return nil, err
	}
	kid, err := SPKIHash(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	s, err := cose.NewSigner(cose.AlgorithmES256, key)
	if err != nil {
		return nil, err
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(cose.AlgorithmES256)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = kid[:]
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, s); err != nil {
		return nil, err
	}
	coseBytes, err := msg.MarshalCBOR()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
		mode int64
	}{
		{BundleManifest, coseBytes, 0o644},
		{BundleKey, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644},
		{BundleBinary, binary, 0o755},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
