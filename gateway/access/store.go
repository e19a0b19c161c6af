package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/wardgate/wardgate/gateway/authority"
)

var (
	bucketGrants = []byte("grants")

	// Written by older versions only; read by Legacy and the broker's
	// start-up, removed by DropLegacy.
	bucketLocks      = []byte("locks")
	bucketRecordings = []byte("recordings")
	bucketMeta       = []byte("meta")
	keyTamper        = []byte("tamper")
)

// Store persists requests and grants in one bbolt file. Older versions also
// kept locks, the tamper latch and a recording index in it: Legacy reads the
// locks and the latch for the authority to import, DropLegacy removes them.
// It is safe for concurrent use; the Broker is its only writer.
type Store struct {
	db *bolt.DB
}

// OpenStore opens (creating if needed, mode 0600, parent directory 0700) the
// store file at path. Only one process may hold it open.
func OpenStore(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open access store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open access store %s: locked by another wardgate process: %w", path, err)
		}
		return nil, fmt.Errorf("open access store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketGrants)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open access store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file. Idempotent.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close access store: %w", err)
	}
	return nil
}

type tamperRec struct {
	Latched bool      `json:"latched"`
	Since   time.Time `json:"since,omitzero"`
}

// Legacy returns the locks and the tamper latch an older version kept in
// this store (none and false if there are none), for
// authority.Authority.Import. The locks' targets are as they were written;
// Import validates them. It fails if a record cannot be decoded.
func (s *Store) Legacy() (locks []authority.Lock, tamper bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketLocks); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				var l authority.Lock // older versions wrote the same field names
				if err := json.Unmarshal(v, &l); err != nil {
					return fmt.Errorf("lock %s: %w", k, err)
				}
				locks = append(locks, l)
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketMeta); b != nil {
			if v := b.Get(keyTamper); v != nil {
				var t tamperRec
				if err := json.Unmarshal(v, &t); err != nil {
					return fmt.Errorf("tamper: %w", err)
				}
				tamper = t.Latched
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("access store: read legacy locks: %w", err)
	}
	return locks, tamper, nil
}

// DropLegacy removes the locks and the tamper latch of an older version
// (call it once the authority imported them). Doing it again is harmless.
func (s *Store) DropLegacy() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketLocks) != nil {
			if err := tx.DeleteBucket(bucketLocks); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketMeta); b != nil {
			return b.Delete(keyTamper)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("access store: drop legacy locks: %w", err)
	}
	return nil
}

func (s *Store) put(bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", bucket, key, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), data)
	}); err != nil {
		return fmt.Errorf("store %s %s: %w", bucket, key, err)
	}
	return nil
}

// each decodes every value of bucket with fn (which gets fresh bytes). A
// missing bucket has no values.
func (s *Store) each(bucket []byte, fn func(k string, v []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			return fn(string(k), append([]byte(nil), v...))
		})
	})
}

// legacyRecording is an entry of an older version's recording index: the
// broker reads it at start-up to report recordings that ended before the
// recording store existed with their real end.
type legacyRecording struct {
	Session string    `json:"session"`
	Ended   time.Time `json:"ended,omitzero"`
	Hash    string    `json:"hash,omitempty"`
}
