package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/jonboulle/clockwork"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Class orders and protects messages.
type Class uint8

// Classes, in send order. Urgent and event messages are the security
// record ("protected"); bulk messages are expendable.
const (
	// ClassUrgent: birth and command replies. Dropped for capacity only
	// when nothing but urgent messages is left (see Options.MaxBytes).
	ClassUrgent Class = iota
	// ClassEvent: security events and inventory. May use the whole budget,
	// reserve included; past it the oldest are dropped to keep the newest.
	ClassEvent
	// ClassBulk: metrics and status. May use only MaxBytes-Reserve; the
	// oldest are dropped first.
	ClassBulk
	numClasses
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrClosed: the outbox was closed.
	ErrClosed = errors.New("outbox closed")
	// ErrDropped: a bulk message was not stored because the bulk share of
	// the budget (MaxBytes-Reserve) is taken by security events, or the
	// message alone is larger than that share. It is counted in Stats.Lost.
	ErrDropped = errors.New("outbox full: bulk message dropped")
	// ErrTooLarge: an urgent or event message is larger than MaxBytes and
	// can never be stored. It is counted in Stats.LostEvents; nothing else
	// was dropped for it.
	ErrTooLarge = errors.New("outbox: message larger than the whole outbox budget (mqtt.outbox_max)")
	// ErrWriteFailed: the transaction could not be written to the state
	// disk; nothing of it was stored and the outbox is unchanged. Later
	// calls try again. The underlying error is wrapped too.
	ErrWriteFailed = errors.New("state disk write failed")
	// ErrDiskFull is the ErrWriteFailed of a full disk (ENOSPC);
	// errors.Is(err, ErrWriteFailed) holds for it as well. Enqueue works
	// again once space was freed.
	ErrDiskFull = fmt.Errorf("%w: disk full", ErrWriteFailed)
)

// Alarm kinds raised through Options.OnAlarm.
const (
	// AlarmFull: security events fill more than the bulk share
	// (MaxBytes-Reserve), so metrics and status are no longer stored. It
	// is the early warning before events are dropped.
	AlarmFull = "outbox_full"
	// AlarmEventsDropped: the whole budget is taken by security events and
	// the oldest of them were dropped (counted in Stats.LostEvents) to
	// keep the newest.
	AlarmEventsDropped = "outbox_events_dropped"
	// AlarmWriteFailed: a commit failed (disk full or failing); messages
	// are not being stored.
	AlarmWriteFailed = "outbox_write_failed"
)

// DroppedKept is how many of the most recent dropped urgent and event
// sequence numbers are remembered one by one for Delivered. Older ones are
// summarised by a persisted low-water mark (see Delivered).
const DroppedKept = 10000

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
	// MaxBytes is the hard budget of stored messages (mqtt.outbox_max),
	// counted as key, value and a fixed per-record overhead; 0 means no
	// cap. Stats.Bytes never exceeds it. When a message does not fit,
	// room is made by dropping, in this order: the oldest bulk messages,
	// the oldest event messages, the oldest urgent messages. A bulk
	// message only ever displaces older bulk messages.
	MaxBytes int64
	// Reserve is the part of MaxBytes that only urgent and event messages
	// may use: a bulk message is stored only if all stored messages,
	// itself included, fit in MaxBytes-Reserve. 0 means MaxBytes/4. It
	// must be less than MaxBytes, and 0 when MaxBytes is 0.
	Reserve int64
	// OnAlarm is called on capacity and write problems (AlarmFull,
	// AlarmEventsDropped, AlarmWriteFailed), synchronously from the
	// Enqueue that caused it but outside any lock: it may Enqueue itself.
	// Each alarm is raised once per episode: AlarmFull and
	// AlarmEventsDropped again after security events drained to half the
	// bulk share, AlarmWriteFailed again after a commit succeeded.
	OnAlarm func(kind, message string)
	Logger  *slog.Logger
	Clock   clockwork.Clock
	// NoSync disables fsync. Only for benchmarks of the network path.
	NoSync bool
}

// validate applies the Reserve default and reports every problem at once.
func (opts *Options) validate() error {
	var errs []error
	if opts.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("outbox: MaxBytes is %d: use 0 for no cap or a positive number of bytes", opts.MaxBytes))
	}
	if opts.Reserve < 0 {
		errs = append(errs, fmt.Errorf("outbox: Reserve is %d: use 0 for the default (MaxBytes/4) or a positive number of bytes", opts.Reserve))
	}
	if opts.MaxBytes == 0 && opts.Reserve > 0 {
		errs = append(errs, fmt.Errorf("outbox: Reserve is %d but MaxBytes is 0 (no cap): a reserve needs a budget; set MaxBytes or leave Reserve 0", opts.Reserve))
	}
	if opts.MaxBytes > 0 && opts.Reserve >= opts.MaxBytes {
		errs = append(errs, fmt.Errorf("outbox: Reserve (%d) must be less than MaxBytes (%d): the reserve is the part of the budget kept for security events, the rest is for metrics and status", opts.Reserve, opts.MaxBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if opts.MaxBytes > 0 && opts.Reserve == 0 {
		opts.Reserve = opts.MaxBytes / 4
	}
	return nil
}

// Stats describe the queue.
type Stats struct {
	Depth  int       // messages stored
	Bytes  int64     // bytes stored, as counted against Options.MaxBytes
	Oldest time.Time // production time of the oldest stored message (zero if empty)
	// Lost counts bulk messages dropped for capacity or discarded, since
	// the file was created.
	Lost uint64
	// LostEvents counts urgent and event messages dropped for capacity,
	// refused as too large or discarded, since the file was created.
	LostEvents uint64
	NextSeq    uint64 // the next sequence number to be assigned
	Session    uint64 // the last session number handed out
}

var (
	bucketMeta    = []byte("meta")
	bucketQ       = [numClasses][]byte{[]byte("q-urgent"), []byte("q-event"), []byte("q-bulk")}
	bucketDropped = []byte("dropped") // seqs of dropped urgent/event messages
	keySeq        = []byte("next-seq")
	keySession    = []byte("session")
	keyLost       = []byte("lost")
	keyLostEvents = []byte("lost-events")
	keyDroppedLow = []byte("dropped-low")
)

const recordOverhead = 16

// Outbox is the durable queue. Create it with Open.
type Outbox struct {
	db    *bbolt.DB
	opts  Options
	log   *slog.Logger
	ready chan struct{}

	droppedKept int // DroppedKept; smaller in tests

	commitMu sync.Mutex // serialises commits; followers batch meanwhile

	mu         sync.Mutex
	closed     bool
	pending    *batch
	nextSeq    uint64
	session    uint64
	state      counters
	fullRaised bool // AlarmFull raised, not yet re-armed
	dropRaised bool // AlarmEventsDropped raised, not yet re-armed
	failRaised bool // AlarmWriteFailed raised, no commit succeeded since
}

// counters is the state a commit changes; it is applied only after the
// transaction committed.
type counters struct {
	lost, lostEvents uint64
	droppedLow       uint64 // dropped seqs at or below it were forgotten
	droppedN         int    // entries in bucketDropped
	depth            [numClasses]int
	bytes            [numClasses]int64
}

func (c *counters) total() int64 {
	return c.bytes[ClassUrgent] + c.bytes[ClassEvent] + c.bytes[ClassBulk]
}

func (c *counters) protected() int64 { return c.bytes[ClassUrgent] + c.bytes[ClassEvent] }

// batch is one group commit: records to store and acknowledged or
// discarded seqs to delete, written in one transaction.
type batch struct {
	recs     []*Record
	acks     []uint64
	discards []uint64
	errs     []error
	done     chan struct{}
	err      error
	alarms   [][2]string // raised after the commit lock is released
}

// Open opens or creates the outbox file at path (its directory is created
// 0700, the file 0600). It fails on invalid Options, naming every problem.
func Open(path string, opts Options) (*Outbox, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
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
	o := &Outbox{db: db, opts: opts, log: opts.Logger.With("component", "outbox"), ready: make(chan struct{}, 1),
		droppedKept: DroppedKept}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		o.nextSeq = getU64(meta, keySeq, 1)
		o.session = getU64(meta, keySession, 0)
		o.state.lost = getU64(meta, keyLost, 0)
		o.state.lostEvents = getU64(meta, keyLostEvents, 0)
		o.state.droppedLow = getU64(meta, keyDroppedLow, 0)
		dropped, err := tx.CreateBucketIfNotExists(bucketDropped)
		if err != nil {
			return err
		}
		o.state.droppedN = dropped.Stats().KeyN
		for c, name := range bucketQ {
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			err = b.ForEach(func(k, v []byte) error {
				o.state.depth[c]++
				o.state.bytes[c] += int64(len(k) + len(v) + recordOverhead)
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
// buckets ("meta", "q-*", "dropped").
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
	for _, d := range o.state.depth {
		n += d
	}
	return n
}

// Enqueue durably stores rec and returns its sequence number. It returns
// only after the transaction holding rec was committed (fsync).
//
// With a budget (Options.MaxBytes) a bulk record that does not fit in the
// bulk share returns ErrDropped; an urgent or event record larger than
// the whole budget returns ErrTooLarge; any other record is stored, older
// ones being dropped to make room (see Options.MaxBytes). A failed write
// returns an error matching ErrWriteFailed (ErrDiskFull when the disk is
// full) and leaves the outbox as it was; a later Enqueue tries again.
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
// handed to a broker, so that the number does not become a gap. Errors
// are those of Enqueue.
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

// Discard deletes stored messages that will never be sent (one that
// cannot be signed, say). Unlike Ack it counts them as lost (Stats.Lost
// for bulk, Stats.LostEvents otherwise) and Delivered reports false for
// the urgent and event ones. Unknown sequence numbers are ignored.
func (o *Outbox) Discard(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, _, err := o.join(func(b *batch) int {
		b.discards = append(b.discards, seqs...)
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

// commit writes one batch in one transaction. The in-memory state changes
// only once the transaction committed, so a failed write changes nothing.
func (o *Outbox) commit(b *batch) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	seq, st := o.nextSeq, o.state
	o.mu.Unlock()
	b.errs = make([]error, len(b.recs))
	limit, share := o.opts.MaxBytes, o.opts.MaxBytes-o.opts.Reserve
	var (
		starved  bool // a bulk message was refused for lack of room left by events
		dropped  int  // urgent and event messages dropped for capacity
		tooLarge int  // urgent and event messages refused as too large
	)
	err := o.db.Update(func(tx *bbolt.Tx) error {
		meta, lostSeqs := tx.Bucket(bucketMeta), tx.Bucket(bucketDropped)
		// remove deletes the record under the cursor (k, v) of class c;
		// lose says whether it counts as lost rather than acknowledged.
		remove := func(c Class, cur *bbolt.Cursor, k, v []byte, lose bool) error {
			s := binary.BigEndian.Uint64(k)
			st.bytes[c] -= int64(len(k) + len(v) + recordOverhead)
			st.depth[c]--
			if err := cur.Delete(); err != nil {
				return err
			}
			switch {
			case !lose:
				return nil
			case c == ClassBulk:
				st.lost++
				return nil
			}
			st.lostEvents++
			st.droppedN++
			return lostSeqs.Put(u64(s), []byte{byte(c)})
		}
		// find removes seq s from whichever queue holds it.
		find := func(s uint64, lose bool) error {
			k := u64(s)
			for c := range numClasses {
				cur := tx.Bucket(bucketQ[c]).Cursor()
				if ck, v := cur.Seek(k); ck != nil && binary.BigEndian.Uint64(ck) == s {
					return remove(c, cur, ck, v, lose)
				}
			}
			return nil
		}
		// dropOldest drops the oldest records of class c until fits.
		dropOldest := func(c Class, fits func() bool) error {
			cur := tx.Bucket(bucketQ[c]).Cursor()
			for k, v := cur.First(); k != nil && !fits(); k, v = cur.First() {
				if err := remove(c, cur, k, v, true); err != nil {
					return err
				}
				if c != ClassBulk {
					dropped++
				}
			}
			return nil
		}
		for _, s := range b.acks {
			if err := find(s, false); err != nil {
				return err
			}
		}
		for _, s := range b.discards {
			if err := find(s, true); err != nil {
				return err
			}
		}
		for i, r := range b.recs {
			val, err := cbor.Marshal(r)
			if err != nil {
				b.errs[i] = fmt.Errorf("outbox: encode: %w", err)
				continue
			}
			size := int64(8 + len(val) + recordOverhead)
			switch {
			case limit <= 0:
			case r.Class == ClassBulk:
				if size > share {
					st.lost++
					b.errs[i] = ErrDropped
					continue
				}
				if st.protected()+size > share {
					// Older bulk would not make room: events hold it.
					st.lost++
					starved = true
					b.errs[i] = ErrDropped
					continue
				}
				if err := dropOldest(ClassBulk, func() bool { return st.total()+size <= share }); err != nil {
					return err
				}
			default:
				if size > limit {
					st.lostEvents++
					tooLarge++
					b.errs[i] = ErrTooLarge
					continue
				}
				fits := func() bool { return st.total()+size <= limit }
				for _, c := range []Class{ClassBulk, ClassEvent, ClassUrgent} {
					if err := dropOldest(c, fits); err != nil {
						return err
					}
				}
			}
			if !r.reserved {
				r.Seq = seq
				seq++
			}
			if err := tx.Bucket(bucketQ[r.Class]).Put(u64(r.Seq), val); err != nil {
				return err
			}
			st.bytes[r.Class] += size
			st.depth[r.Class]++
		}
		// Remember only the newest dropped seqs; the low-water mark stands
		// for the ones forgotten.
		cur := lostSeqs.Cursor()
		for k, _ := cur.First(); k != nil && st.droppedN > o.droppedKept; k, _ = cur.First() {
			st.droppedLow = max(st.droppedLow, binary.BigEndian.Uint64(k))
			if err := cur.Delete(); err != nil {
				return err
			}
			st.droppedN--
		}
		for _, kv := range []struct {
			k []byte
			v uint64
		}{{keySeq, seq}, {keyLost, st.lost}, {keyLostEvents, st.lostEvents}, {keyDroppedLow, st.droppedLow}} {
			if err := meta.Put(kv.k, u64(kv.v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		werr := writeErr(err)
		o.log.Error("outbox commit failed; nothing of it was stored", "err", err)
		o.mu.Lock()
		raise := !o.failRaised
		o.failRaised = true
		o.mu.Unlock()
		if raise {
			msg := "telemetry outbox cannot write to the state disk (the log has the cause): check the disk. Messages, security events included, are refused until it works"
			if errors.Is(werr, ErrDiskFull) {
				msg = "telemetry outbox cannot store messages: the state disk is full. Free space in the state directory; messages, security events included, are refused until then"
			}
			b.alarms = append(b.alarms, [2]string{AlarmWriteFailed, msg})
		}
		return fmt.Errorf("outbox: store: %w", werr)
	}

	o.mu.Lock()
	o.nextSeq, o.state = seq, st
	if o.failRaised {
		o.failRaised = false
		o.log.Info("outbox writes work again")
	}
	var raiseFull, raiseDrop bool
	if limit > 0 {
		full := starved || st.protected() > share
		if full && !o.fullRaised && len(b.recs) > 0 { // raised by Enqueue only
			o.fullRaised, raiseFull = true, true
		}
		if dropped+tooLarge > 0 && !o.dropRaised {
			o.dropRaised, raiseDrop = true, true
		}
		if !full && st.protected()*2 <= share {
			o.fullRaised, o.dropRaised = false, false // drained: re-arm
		}
	}
	o.mu.Unlock()
	if raiseFull {
		b.alarms = append(b.alarms, [2]string{AlarmFull, "telemetry outbox: security events fill the space for metrics and status (mqtt.outbox_max less the reserve for security events), so metrics and status are being dropped. Central has not acknowledged messages for a while: check the broker connection. Security events are still kept"})
	}
	if raiseDrop {
		msg := fmt.Sprintf("telemetry outbox is full of security events (mqtt.outbox_max %d bytes): the oldest are being dropped to keep the newest and will never reach central (%d lost so far). Check the broker connection and central; raise mqtt.outbox_max if outages this long must be covered", limit, st.lostEvents)
		if dropped == 0 {
			msg = fmt.Sprintf("telemetry outbox refused a security event larger than its whole budget (mqtt.outbox_max %d bytes): raise mqtt.outbox_max", limit)
		}
		b.alarms = append(b.alarms, [2]string{AlarmEventsDropped, msg})
	}
	if len(b.recs) > 0 {
		o.signal()
	}
	return nil
}

// writeErr classifies a failed write: ErrDiskFull for ENOSPC, otherwise
// ErrWriteFailed, wrapping the cause too.
func writeErr(err error) error {
	// bbolt reports a failure to grow the file as text ("file resize
	// error: ..."), so the message is matched as well as the chain.
	if errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error()) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return fmt.Errorf("%w: %w", ErrWriteFailed, err)
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
	if err := o.db.Update(fn); err != nil {
		return writeErr(err)
	}
	return nil
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

// Delivered reports whether message seq has left the gateway: it was
// enqueued (0 < seq < NextSeq), is no longer stored, and was acknowledged
// rather than dropped or discarded. It is false while the message waits.
//
// For urgent and event messages a true answer is certain: their drops are
// recorded in the file. The newest DroppedKept drops are kept one by one;
// when older ones are forgotten, every seq at or below the newest
// forgotten one reports false, delivered or not, so a caller never acts
// on a message central lacks. It may also report false for a message that
// central received but that was dropped before its acknowledgement came.
// Drops of bulk messages are not recorded: do not ask about them. A seq
// taken with ReserveSeq and not (yet) stored with EnqueueReserved reports
// true, as for a Will the broker published.
//
// It survives restarts. It returns ErrClosed after Close, or a read error.
func (o *Outbox) Delivered(seq uint64) (bool, error) {
	o.mu.Lock()
	closed, next := o.closed, o.nextSeq
	o.mu.Unlock()
	if closed {
		return false, ErrClosed
	}
	if seq == 0 || seq >= next {
		return false, nil
	}
	delivered := false
	err := o.db.View(func(tx *bbolt.Tx) error {
		k := u64(seq)
		for c := range numClasses {
			if tx.Bucket(bucketQ[c]).Get(k) != nil {
				return nil
			}
		}
		if seq <= getU64(tx.Bucket(bucketMeta), keyDroppedLow, 0) || tx.Bucket(bucketDropped).Get(k) != nil {
			return nil
		}
		delivered = true
		return nil
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			return false, ErrClosed
		}
		return false, fmt.Errorf("outbox: read: %w", err)
	}
	return delivered, nil
}

// Stats returns the queue's state.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	st := o.state
	s := Stats{Bytes: st.total(), Lost: st.lost, LostEvents: st.lostEvents, NextSeq: o.nextSeq, Session: o.session}
	for _, d := range st.depth {
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
