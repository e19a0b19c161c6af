package siem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrQueueInUse means another process holds the queue file.
var ErrQueueInUse = errors.New("siem: queue is in use by another process")

var (
	bucketItems = []byte("items") // id (big endian) -> flags byte + record
	bucketBulk  = []byte("bulk")  // ids of bulk records, oldest first
	bucketMeta  = []byte("meta")
	keyDropBulk = []byte("dropped_bulk")
	keyDropSec  = []byte("dropped_security")
)

// DefaultQueueMax is the default bound of a Queue in records.
const DefaultQueueMax = 100_000

// Item is one queued record.
type Item struct {
	ID   uint64 // increasing, never reused within a queue file
	Bulk bool
	Data []byte
}

// Drops counts records a full queue dropped, by class.
type Drops struct {
	Bulk     uint64 `json:"bulk"`
	Security uint64 `json:"security"`
}

// Queue is a bounded, durable FIFO of records in a bbolt file: Put commits
// (fsync) before it returns, so a record survives a crash or power cut
// until a sink deletes it after delivery. When it holds Max records, Put
// drops the oldest bulk record, or the oldest record when none is bulk,
// and counts it. It is safe for concurrent use.
type Queue struct {
	db     *bbolt.DB
	max    int
	mu     sync.Mutex // guards n; writes are serialised by bbolt as well
	n      int
	notify chan struct{}
}

// OpenQueue opens or creates the queue file path (its directory is
// created 0700, the file 0600). max <= 0 is DefaultQueueMax. A file held
// by another process gives ErrQueueInUse after one second.
func OpenQueue(path string, max int) (*Queue, error) {
	if max <= 0 {
		max = DefaultQueueMax
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("siem: queue directory: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrQueueInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("siem: open queue %s: %w", path, err)
	}
	q := &Queue{db: db, max: max, notify: make(chan struct{}, 1)}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketItems, bucketBulk, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		q.n = tx.Bucket(bucketItems).Stats().KeyN
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("siem: open queue %s: %w", path, err)
	}
	return q, nil
}

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

// Record is one record to queue.
type Record struct {
	Data []byte
	Bulk bool // metrics, status: dropped first when the queue is full
}

// Put appends a record and commits it to disk.
func (q *Queue) Put(data []byte, bulk bool) error {
	return q.PutBatch([]Record{{Data: data, Bulk: bulk}})
}

// PutBatch appends records in order and commits them in one transaction
// (one fsync): callers with many records at once should prefer it.
func (q *Queue) PutBatch(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	err := q.db.Update(func(tx *bbolt.Tx) error {
		items, bulkIdx, meta := tx.Bucket(bucketItems), tx.Bucket(bucketBulk), tx.Bucket(bucketMeta)
		n = q.n
		for _, r := range recs {
			for ; n >= q.max; n-- {
				victim, counter := []byte(nil), keyDropSec
				if k, _ := bulkIdx.Cursor().First(); k != nil {
					victim, counter = append([]byte(nil), k...), keyDropBulk
				} else if k, _ := items.Cursor().First(); k != nil {
					victim = append([]byte(nil), k...)
				} else {
					break
				}
				if err := items.Delete(victim); err != nil {
					return err
				}
				if err := bulkIdx.Delete(victim); err != nil {
					return err
				}
				if err := meta.Put(counter, binary.BigEndian.AppendUint64(nil, getU64(meta, counter)+1)); err != nil {
					return err
				}
			}
			id, err := items.NextSequence()
			if err != nil {
				return err
			}
			flag := byte(0)
			if r.Bulk {
				flag = 1
				if err := bulkIdx.Put(idKey(id), nil); err != nil {
					return err
				}
			}
			if err := items.Put(idKey(id), append([]byte{flag}, r.Data...)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("siem: queue put: %w", err)
	}
	q.n = n
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return nil
}

func getU64(b *bbolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// After returns up to n records with an id greater than id, oldest first.
func (q *Queue) After(id uint64, n int) ([]Item, error) {
	var out []Item
	err := q.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketItems).Cursor()
		for k, v := c.Seek(idKey(id + 1)); k != nil && len(out) < n; k, v = c.Next() {
			if len(v) < 1 {
				continue
			}
			out = append(out, Item{ID: binary.BigEndian.Uint64(k), Bulk: v[0] == 1, Data: append([]byte(nil), v[1:]...)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("siem: queue read: %w", err)
	}
	return out, nil
}

// Delete removes records; ids that are gone already (dropped) are
// ignored.
func (q *Queue) Delete(ids ...uint64) error {
	if len(ids) == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	removed := 0
	err := q.db.Update(func(tx *bbolt.Tx) error {
		items, bulkIdx := tx.Bucket(bucketItems), tx.Bucket(bucketBulk)
		for _, id := range ids {
			k := idKey(id)
			if items.Get(k) == nil {
				continue
			}
			if err := items.Delete(k); err != nil {
				return err
			}
			if err := bulkIdx.Delete(k); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("siem: queue delete: %w", err)
	}
	q.n -= removed
	return nil
}

// Len returns the number of queued records.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Dropped returns how many records the bound has dropped, over the life
// of the queue file.
func (q *Queue) Dropped() Drops {
	var d Drops
	_ = q.db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		d = Drops{Bulk: getU64(m, keyDropBulk), Security: getU64(m, keyDropSec)}
		return nil
	})
	return d
}

// Notify is signalled (capacity one) after every Put.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

// Close closes the file. Calling it twice is harmless.
func (q *Queue) Close() error {
	err := q.db.Close()
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return nil
	}
	return err
}

// dropWatch logs, at most once a minute, that a full queue dropped
// records. Sinks call it after each put.
type dropWatch struct {
	mu      sync.Mutex
	seen    Drops
	started bool
	logged  time.Time
}

func (w *dropWatch) check(q *Queue, now time.Time, log func(msg string, args ...any)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := q.Dropped()
	if !w.started {
		w.seen, w.started = d, true // drops before this process are not news
		return
	}
	if d == w.seen || (!w.logged.IsZero() && now.Sub(w.logged) < time.Minute) {
		return
	}
	log("siem queue full: oldest records dropped (bulk first); the receiver is away or too slow",
		"dropped_bulk", d.Bulk-w.seen.Bulk, "dropped_security", d.Security-w.seen.Security, "queued", q.Len())
	w.seen, w.logged = d, now
}
