package monitor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the monitor's own bbolt file (STATE_DIR/monitor.db). Values
// are JSON; keys are described per bucket.
var (
	bucketIdentities = []byte("clinical-identities") // DEVICE NUL IDENTITY -> first seen (RFC 3339)
	bucketMACs       = []byte("macs")                // IP -> learned MAC (lowercase, colons)
	bucketBaselines  = []byte("baselines")           // DEVICE -> baseline
	bucketApprovers  = []byte("approvers")           // ACTOR -> approverHours
	bucketMeta       = []byte("meta")                // "devices-first-seen" -> map[device]time
)

type store struct{ db *bolt.DB }

func openStore(path string) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("monitor state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open monitor state %s: %w (is another wardgate running?)", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketIdentities, bucketMACs, bucketBaselines, bucketApprovers, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("monitor state %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

// get decodes the JSON value of key in bucket into v; false when absent or
// unreadable (a damaged record is relearned, never fatal).
func (s *store) get(bucket []byte, key string, v any) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket).Get([]byte(key))
		if b != nil && json.Unmarshal(b, v) == nil {
			found = true
		}
		return nil
	})
	return found
}

// put stores v as JSON under key.
func (s *store) put(bucket []byte, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), b) })
}

// putMany stores several values of one bucket in one transaction.
func (s *store) putMany(bucket []byte, kv map[string]any) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		for k, v := range kv {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			if err := bk.Put([]byte(k), b); err != nil {
				return err
			}
		}
		return nil
	})
}

// has reports whether key is in bucket.
func (s *store) has(bucket []byte, key string) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucket).Get([]byte(key)) != nil
		return nil
	})
	return found
}

// count returns the number of keys in bucket.
func (s *store) count(bucket []byte) int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	return n
}
