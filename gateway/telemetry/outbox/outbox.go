package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/jonboulle/clockwork"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Class orders and protects messages.
type Class uint8

// Classes, in send order.
const (
	// ClassUrgent: birth and command replies; never dropped.
	ClassUrgent Class = iota
	// ClassEvent: security events and inventory; never dropped.
	ClassEvent
	// ClassBulk: metrics and status; the oldest are dropped when full.
	ClassBulk
	numClasses
)

// Sentinel errors.
var (
	// ErrClosed: the outbox was closed.
	ErrClosed = errors.New("outbox closed")
	// ErrDropped: a bulk message was not stored because the outbox is full
	// of messages that may not be dropped. It is counted as lost.
	ErrDropped = errors.New("outbox full: bulk message dropped")
)

// Alarm kinds raised through Options.OnAlarm.
const (
	AlarmFull        = "outbox_full"
	AlarmWriteFailed = "outbox_write_failed"
)

// Record is one queued message, before signing.
type Record struct {
	Seq   uint64 `cbor:"-"` // assigned by Enqueue
	Class Class  `cbor:"1,keyasint"`
	Kind  string `cbor:"2,keyasint"`
	Time  int64  `cbor:"3,keyasint"` // ms since epoch, when produced
	Body  []byte `cbor:"4,keyasint"` // deterministic CBOR

	reserved bool // Seq was reserved earlier (EnqueueReserved)
}

// Options configures an outbox. The zero value is usable: no capacity
// limit, the real clock, no alarms, a discarding logger.
type Options struct {
	// MaxBytes caps the stored messages (mqtt.outbox_max); 0 means no cap.
	MaxBytes int64
	// OnAlarm is called on capacity and write problems (kind AlarmFull or
	// AlarmWriteFailed), synchronously from the Enqueue that caused it but
	// outside any lock: it may Enqueue itself.
	OnAlarm func(kind, message string)
	Logger  *slog.Logger
	Clock   clockwork.Clock
	// NoSync disables fsync. Only for benchmarks of the network path.
	NoSync bool
}

// Stats describe the queue.
type Stats struct {
	Depth   int       // messages stored
	Bytes   int64     // approximate bytes stored
	Oldest  time.Time // production time of the oldest stored message (zero if empty)
	Lost    uint64    // bulk messages dropped for capacity since the file was created
	NextSeq uint64    // the next sequence number to be assigned
	Session uint64    // the last session number handed out
}

var (
	bucketMeta = []byte("meta")
	bucketQ    = [numClasses][]byte{[]byte("q-urgent"), []byte("q-event"), []byte("q-bulk")}
	keySeq     = []byte("next-seq")
	keySession = []byte("session")
	keyLost    = []byte("lost")
)

const recordOverhead = 16

// Outbox is the durable queue. Create it with Open.
type Outbox struct {
	db    *bbolt.DB
	opts  Options
	log   *slog.Logger
	ready chan struct{}

	commitMu sync.Mutex // serialises commits; followers batch meanwhile

	mu      sync.Mutex
	closed  bool
	pending *batch
	nextSeq uint64
	session uint64
	lost    uint64
	depth   [numClasses]int
	bytes   int64
	full    bool
}

// batch is one group commit: records to store and acknowledged seqs to
// delete, written in one transaction.
type batch struct {
	recs   []*Record
	acks   []uint64
	errs   []error
	done   chan struct{}
	err    error
	alarms [][2]string // raised after the commit lock is released
}

// Open opens or creates the outbox file at path (its directory is created
// 0700, the file 0600).
func Open(path string, opts Options) (*Outbox, error) {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("outbox: create directory: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, NoSync: opts.NoSync})
	if err != nil {
		return nil, fmt.Errorf("outbox: open %s (is another wardgate running?): %w", path, err)
	}
	o := &Outbox{db: db, opts: opts, log: opts.Logger.With("component", "outbox"), ready: make(chan struct{}, 1)}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		o.nextSeq = getU64(meta, keySeq, 1)
		o.session = getU64(meta, keySession, 0)
		o.lost = getU64(meta, keyLost, 0)
		for c, name := range bucketQ {
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			err = b.ForEach(func(k, v []byte) error {
				o.depth[c]++
				o.bytes += int64(len(k) + len(v) + recordOverhead)
				if s := binary.BigEndian.Uint64(k); s >= o.nextSeq {
					o.nextSeq = s + 1 // never reuse, even if meta was behind
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox: read %s: %w", path, err)
	}
	if o.Len() > 0 {
		o.signal()
	}
	return o, nil
}

func getU64(b *bbolt.Bucket, k []byte, def uint64) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return def
	}
	return binary.BigEndian.Uint64(v)
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// DB returns the underlying database so that other telemetry state (the
// command nonce store) lives in the same file. Do not touch the outbox's
// buckets ("meta", "q-*").
func (o *Outbox) DB() *bbolt.DB { return o.db }

// Ready is signalled (without blocking, capacity 1) after messages were
// added.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

func (o *Outbox) signal() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// Len returns the number of stored messages.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, d := range o.depth {
		n += d
	}
	return n
}

// Enqueue durably stores rec and returns its sequence number. It returns
// only after the transaction holding rec was committed (fsync). A bulk
// record that does not fit returns ErrDropped.
func (o *Outbox) Enqueue(rec Record) (uint64, error) {
	if rec.Class >= numClasses {
		return 0, fmt.Errorf("outbox: unknown class %d", rec.Class)
	}
	r := rec
	b, idx, err := o.join(func(b *batch) int {
		b.recs = append(b.recs, &r)
		return len(b.recs) - 1
	})
	if err != nil {
		return 0, err
	}
	if err := b.errs[idx]; err != nil {
		return 0, err
	}
	return r.Seq, nil
}

// EnqueueReserved stores rec under a sequence number previously taken
// with ReserveSeq (rec.Seq), for example a death Will that was never
// handed to a broker, so that the number does not become a gap.
func (o *Outbox) EnqueueReserved(rec Record) error {
	o.mu.Lock()
	next := o.nextSeq
	o.mu.Unlock()
	if rec.Class >= numClasses || rec.Seq == 0 || rec.Seq >= next {
		return fmt.Errorf("outbox: seq %d was not reserved", rec.Seq)
	}
	r := rec
	r.reserved = true
	b, idx, err := o.join(func(b *batch) int {
		b.recs = append(b.recs, &r)
		return len(b.recs) - 1
	})
	if err != nil {
		return err
	}
	return b.errs[idx]
}

// Ack deletes acknowledged messages. It shares the group commit of
// concurrent Enqueue calls and returns once the deletion is durable.
// Unknown sequence numbers (already deleted or dropped) are ignored.
func (o *Outbox) Ack(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, _, err := o.join(func(b *batch) int {
		b.acks = append(b.acks, seqs...)
		return -1
	})
	return err
}

// join adds work to the pending batch. The goroutine that opened the batch
// commits it once the previous commit finished; the others wait for it.
func (o *Outbox) join(add func(b *batch) int) (*batch, int, error) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, 0, ErrClosed
	}
	leader := false
	if o.pending == nil {
		o.pending = &batch{done: make(chan struct{})}
		leader = true
	}
	b := o.pending
	idx := add(b)
	o.mu.Unlock()

	if leader {
		o.commitMu.Lock()
		o.mu.Lock()
		if o.pending == b {
			o.pending = nil
		}
		o.mu.Unlock()
		b.err = o.commit(b)
		o.commitMu.Unlock()
		close(b.done)
		// Outside the lock: OnAlarm may enqueue an event itself.
		for _, a := range b.alarms {
			o.alarm(a[0], a[1])
		}
	} else {
		<-b.done
	}
	return b, idx, b.err
}

// commit writes one batch in one transaction.
func (o *Outbox) commit(b *batch) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	seq, lost, bytes, depth := o.nextSeq, o.lost, o.bytes, o.depth
	o.mu.Unlock()
	b.errs = make([]error, len(b.recs))
	var alarmFull bool
	err := o.db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for _, s := range b.acks {
			k := u64(s)
			for c := range numClasses {
				q := tx.Bucket(bucketQ[c])
				if v := q.Get(k); v != nil {
					bytes -= int64(len(k) + len(v) + recordOverhead)
					depth[c]--
					if err := q.Delete(k); err != nil {
						return err
					}
					break
				}
			}
		}
		for i, r := range b.recs {
			val, err := cbor.Marshal(r)
			if err != nil {
				b.errs[i] = fmt.Errorf("outbox: encode: %w", err)
				continue
			}
			size := int64(8 + len(val) + recordOverhead)
			if limit := o.opts.MaxBytes; limit > 0 && bytes+size > limit {
				// Drop the oldest bulk messages first.
				q := tx.Bucket(bucketQ[ClassBulk])
				c := q.Cursor()
				for k, v := c.First(); k != nil && bytes+size > limit; k, v = c.First() {
					bytes -= int64(len(k) + len(v) + recordOverhead)
					depth[ClassBulk]--
					lost++
					if err := c.Delete(); err != nil {
						return err
					}
				}
				if bytes+size > limit {
					if r.Class == ClassBulk {
						lost++
						b.errs[i] = ErrDropped
						continue
					}
					alarmFull = true // events and urgent messages are kept anyway
				}
			}
			if !r.reserved {
				r.Seq = seq
				seq++
			}
			if err := tx.Bucket(bucketQ[r.Class]).Put(u64(r.Seq), val); err != nil {
				return err
			}
			bytes += size
			depth[r.Class]++
		}
		if err := meta.Put(keySeq, u64(seq)); err != nil {
			return err
		}
		return meta.Put(keyLost, u64(lost))
	})
	if err != nil {
		b.alarms = append(b.alarms, [2]string{AlarmWriteFailed, fmt.Sprintf("telemetry outbox write failed (%v): free disk space in the state directory; messages are not being stored", err)})
		return fmt.Errorf("outbox: store: %w", err)
	}
	o.mu.Lock()
	o.nextSeq, o.lost, o.bytes, o.depth = seq, lost, bytes, depth
	wasFull := o.full
	o.full = alarmFull || (wasFull && o.opts.MaxBytes > 0 && bytes >= o.opts.MaxBytes)
	o.mu.Unlock()
	if len(b.recs) == 0 {
		return nil // acknowledgements only: nothing new to send
	}
	if alarmFull && !wasFull {
		b.alarms = append(b.alarms, [2]string{AlarmFull, "telemetry outbox is full of security events: the broker has not acknowledged messages for a long time; check the broker connection or raise mqtt.outbox_max. Events are still kept"})
	}
	o.signal()
	return nil
}

func (o *Outbox) alarm(kind, msg string) {
	o.log.Warn("outbox alarm", "alarm", kind, "message", msg)
	if o.opts.OnAlarm != nil {
		o.opts.OnAlarm(kind, msg)
	}
}

// update runs fn in a write transaction unless closed.
func (o *Outbox) update(fn func(tx *bbolt.Tx) error) error {
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return o.db.Update(fn)
}

// NextSession increments and returns the persistent session counter. Call
// it once per broker connection.
func (o *Outbox) NextSession() (uint64, error) {
	var s uint64
	err := o.update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s = getU64(meta, keySession, 0) + 1
		return meta.Put(keySession, u64(s))
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: session counter: %w", err)
	}
	o.mu.Lock()
	o.session = s
	o.mu.Unlock()
	return s, nil
}

// ReserveSeq durably takes one sequence number without storing a message
// (for the death Will, which the broker publishes on our behalf).
func (o *Outbox) ReserveSeq() (uint64, error) {
	o.commitMu.Lock()
	defer o.commitMu.Unlock()
	o.mu.Lock()
	seq := o.nextSeq
	o.mu.Unlock()
	err := o.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySeq, u64(seq+1))
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: reserve seq: %w", err)
	}
	o.mu.Lock()
	o.nextSeq = seq + 1
	o.mu.Unlock()
	return seq, nil
}

// Peek returns up to max stored records in send order (urgent, event,
// bulk; oldest first), skipping those for which skip returns true (those
// in flight).
func (o *Outbox) Peek(max int, skip func(seq uint64) bool) ([]Record, error) {
	var out []Record
	err := o.db.View(func(tx *bbolt.Tx) error {
		for c := range numClasses {
			cur := tx.Bucket(bucketQ[c]).Cursor()
			for k, v := cur.First(); k != nil && len(out) < max; k, v = cur.Next() {
				seq := binary.BigEndian.Uint64(k)
				if skip != nil && skip(seq) {
					continue
				}
				var r Record
				if err := cbor.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("record %d: %w", seq, err)
				}
				r.Seq = seq
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("outbox: read: %w", err)
	}
	return out, nil
}

// Stats returns the queue's state.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	s := Stats{Bytes: o.bytes, Lost: o.lost, NextSeq: o.nextSeq, Session: o.session}
	for _, d := range o.depth {
		s.Depth += d
	}
	closed := o.closed
	o.mu.Unlock()
	if closed || s.Depth == 0 {
		return s
	}
	_ = o.db.View(func(tx *bbolt.Tx) error {
		oldest := int64(-1)
		for c := range numClasses {
			_, v := tx.Bucket(bucketQ[c]).Cursor().First()
			if v == nil {
				continue
			}
			var r Record
			if cbor.Unmarshal(v, &r) == nil && (oldest < 0 || r.Time < oldest) {
				oldest = r.Time
			}
		}
		if oldest >= 0 {
			s.Oldest = time.UnixMilli(oldest)
		}
		return nil
	})
	return s
}

// Close closes the file. It is idempotent; later calls fail with ErrClosed.
func (o *Outbox) Close() error {
	o.commitMu.Lock()
	defer o.commitMu.Unlock()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	return o.db.Close()
}
