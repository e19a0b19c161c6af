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
)

var (
	bucketGrants     = []byte("grants")
	bucketLocks      = []byte("locks")
	bucketRecordings = []byte("recordings")
	bucketMeta       = []byte("meta")
	keyTamper        = []byte("tamper")
)

// Store persists requests, grants, locks, the tamper latch and the recording
// index in one bbolt file. It is safe for concurrent use; the Broker is its
// only writer.
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
		for _, b := range [][]byte{bucketGrants, bucketLocks, bucketRecordings, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
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

func (s *Store) delete(bucket []byte, key string) error {
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Delete([]byte(key))
	}); err != nil {
		return fmt.Errorf("delete %s %s: %w", bucket, key, err)
	}
	return nil
}

// each decodes every value of bucket with fn (which gets fresh bytes).
func (s *Store) each(bucket []byte, fn func(k string, v []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			return fn(string(k), append([]byte(nil), v...))
		})
	})
}

// recordingRec indexes one recording file.
type recordingRec struct {
	Session string    `json:"session"`
	File    string    `json:"file"` // base name under the recording directory
	Size    int64     `json:"size"`
	Start   time.Time `json:"start"`
	Ended   time.Time `json:"ended,omitzero"`
	Hash    string    `json:"hash,omitempty"`
	Acked   bool      `json:"acked"`
}

type tamperRec struct {
	Latched bool      `json:"latched"`
	Since   time.Time `json:"since,omitzero"`
}
