package recording

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Defaults applied by OpenStore to zero StoreOptions fields.
const (
	DefaultMaxBytes   int64 = 1 << 30
	DefaultFsyncEvery       = 2 * time.Second
	DefaultPruneEvery       = time.Minute
)

// LowWater is the share of the effective cap that Prune frees down to, so
// that live sessions have room to grow before the next prune.
const LowWater = 0.8

// File names in the store directory. A recording of session S is S.cbor;
// its end marker is S.end (JSON endMarker), written to a temp file named
// ".S.end-*.tmp", synced and renamed. Session ids never start with '.', so
// leftover temp files are recognisable.
const (
	recExt = ".cbor"
	endExt = ".end"
	tmpExt = ".tmp"
)

// StoreOptions configure a Store. Zero values take the defaults stated per
// field.
type StoreOptions struct {
	// MaxBytes is the absolute cap on the bytes of recordings in the store
	// (default DefaultMaxBytes, 1 GiB).
	MaxBytes int64
	// MaxFreeShare, if positive, also caps the store at this fraction (at
	// most 1) of the bytes it could use on its filesystem: the available
	// bytes plus the recordings' own. 0: no share limit.
	MaxFreeShare float64
	// FsyncEvery bounds how long written frames of a live recording may stay
	// unsynced while Run runs (default DefaultFsyncEvery, 2s).
	FsyncEvery time.Duration
	// PruneEvery is how often Run calls Prune (default DefaultPruneEvery).
	PruneEvery time.Duration
	// Retain, if positive, makes Prune also delete ended recordings whose
	// session-end event central has received once they ended longer ago than
	// Retain, even when the store is not short of space. 0 (the default)
	// keeps them until space is needed: central holds the signed event and
	// hash, not the recorded bytes, so the gateway keeps the evidence as long
	// as it can.
	Retain time.Duration

	// Delivered reports whether the signed session-end event with telemetry
	// sequence number seq has reached central. It is called without the
	// store's locks held. Nil: never delivered, so nothing is ever pruned.
	Delivered func(seq uint64) (bool, error)
	// Archived, when set (an upload URL is configured), reports whether
	// central answered the upload of session's recording with a signed
	// receipt; Prune then deletes a recording only when both Delivered and
	// Archived are true. It is called without the store's locks held.
	Archived func(session string) (bool, error)
	// OnRemove, if set, is called after Prune deleted a recording (for the
	// audit event), without the store's locks held.
	OnRemove func(Removed)
	// DiskAvailable returns the bytes available on the filesystem holding
	// dir. Nil: statfs(2). If it fails, the share limit is skipped (the cap
	// is MaxBytes) and the error is logged and shown in Stats.
	DiskAvailable func(dir string) (int64, error)

	Clock  clockwork.Clock // default: real clock
	Logger *slog.Logger    // default: discard; a component attribute is added

	syncFile func(*os.File) error // tests: replaces (*os.File).Sync for Writers and markers
}

// Removed describes a recording deleted by Prune.
type Removed struct {
	Session string
	File    string // base name in the store directory
	Bytes   int64
	Ended   time.Time // when Ended was called
	EndSeq  uint64    // telemetry seq of the session-end event
}

// Stats is a snapshot of the store for status pages.
type Stats struct {
	Dir          string
	Bytes        int64 // bytes of recordings, live ones included
	Cap          int64 // effective cap: min(MaxBytes, ShareCap if set)
	MaxBytes     int64 // configured absolute cap
	ShareCap     int64 // MaxFreeShare of (available + Bytes); 0 if no share limit or unknown
	Recordings   int   // recording files in the store
	Live         int   // being written by a Writer of this store
	Ended        int   // not live, with an end marker (deleted once delivered and space is needed)
	Unended      int   // not live and without end marker: the gateway stopped during the session; kept
	Removed      int64 // recordings deleted by Prune since OpenStore
	RemovedBytes int64 // their bytes
	LastPrune    time.Time
	LastError    string // last pruning, syncing or disk-space problem since OpenStore; empty if none
}

// endMarker is the content of S.end.
type endMarker struct {
	Session string    `json:"session"`
	Ended   time.Time `json:"ended"`
	Seq     uint64    `json:"seq"`
}

// entry is the store's view of one recording.
type entry struct {
	size     int64
	creating bool    // Create is opening the file
	live     *Writer // open Writer of this store
	ended    bool    // end marker present
	end      time.Time
	seq      uint64
	syncErr  bool // a sync failure was logged
}

// Store owns a directory of recordings: it caps their disk use, keeps each
// recording until central has received its session-end event, then prunes
// oldest first when space is needed, and syncs live recordings periodically.
//
// Usage counts the recording files (S.cbor, live ones by the bytes written);
// the end markers (S.end, under 100 bytes each) are not counted. Accounting
// is rebuilt from the directory at OpenStore and whenever Prune runs (so
// does Create), so files deleted by hand drop out of it. A recording
// without end marker (its session never ended, e.g. the gateway stopped) is
// kept and counted until Ended is called for it; see Unended.
//
// All methods are safe for concurrent use. Run must be running for the
// periodic sync and prune.
type Store struct {
	dir   string
	o     StoreOptions
	log   *slog.Logger
	clock clockwork.Clock

	pruneMu sync.Mutex // serialises Prune
	endMu   sync.Mutex // serialises end-marker writes

	// Lock order: a Writer's mu before mu (growth and close hooks run under
	// the Writer's lock); never call a Writer method while holding mu.
	mu           sync.Mutex
	recs         map[string]*entry
	used         int64
	running      bool
	removed      int64
	removedBytes int64
	lastPrune    time.Time
	lastErr      string
	lastDiskErr  string

	tickDone func() // tests: called after each Run tick's work
}

// OpenStore opens (creating it 0700 if needed, and tightening it to 0700)
// the recordings directory dir, removes leftovers of interrupted writes, and
// accounts the recordings found there. Invalid options are all reported at
// once.
func OpenStore(dir string, o StoreOptions) (*Store, error) {
	var errs []error
	if dir == "" {
		errs = append(errs, errors.New("recording store: directory is empty"))
	}
	if o.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("recording store: MaxBytes %d is negative", o.MaxBytes))
	}
	if o.MaxFreeShare < 0 || o.MaxFreeShare > 1 || math.IsNaN(o.MaxFreeShare) {
		errs = append(errs, fmt.Errorf("recording store: MaxFreeShare %v is not between 0 and 1", o.MaxFreeShare))
	}
	if o.FsyncEvery < 0 {
		errs = append(errs, fmt.Errorf("recording store: FsyncEvery %v is negative", o.FsyncEvery))
	}
	if o.PruneEvery < 0 {
		errs = append(errs, fmt.Errorf("recording store: PruneEvery %v is negative", o.PruneEvery))
	}
	if o.Retain < 0 {
		errs = append(errs, fmt.Errorf("recording store: Retain %v is negative", o.Retain))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.FsyncEvery == 0 {
		o.FsyncEvery = DefaultFsyncEvery
	}
	if o.PruneEvery == 0 {
		o.PruneEvery = DefaultPruneEvery
	}
	if o.DiskAvailable == nil {
		o.DiskAvailable = diskAvailable
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.syncFile == nil {
		o.syncFile = (*os.File).Sync
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording store: create directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("recording store: restrict directory to its owner: %w", err)
	}
	s := &Store{dir: dir, o: o, log: o.Logger.With("component", "recording"), clock: o.Clock, recs: map[string]*entry{}}
	s.mu.Lock()
	err := s.scanLocked(true)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("recording store: %w", err)
	}
	return s, nil
}

// ValidSession reports whether id can name a recording (see
// ErrInvalidSession).
func ValidSession(id string) bool {
	if id == "" || len(id) > 128 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Path returns the file the recording of session is (or would be) stored
// in. The session id is not validated.
func (s *Store) Path(session string) string { return filepath.Join(s.dir, session+recExt) }

func (s *Store) endPath(session string) string { return filepath.Join(s.dir, session+endExt) }

// scanLocked reconciles the index with the directory: recordings that are
// neither live nor being created take their size from the file or, if the
// file is gone, leave the index; new files are added with their end markers.
// End markers without recording are removed, and so, when opening, are
// leftover temp files (later, one may be an end marker being written).
func (s *Store) scanLocked(opening bool) error {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("read recordings directory: %w", err)
	}
	files := map[string]int64{}
	markers := map[string]bool{}
	changed := false
	for _, de := range des {
		name := de.Name()
		switch {
		case strings.HasPrefix(name, ".") && strings.HasSuffix(name, tmpExt):
			if !opening {
				continue
			}
			// An end marker whose write was interrupted; its rename never happened.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot remove leftover temp file", "file", name, "err", err)
			}
			changed = true
		case strings.HasSuffix(name, recExt) && ValidSession(strings.TrimSuffix(name, recExt)):
			if !de.Type().IsRegular() {
				continue
			}
			fi, err := de.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("stat recording %s: %w", name, err)
			}
			files[strings.TrimSuffix(name, recExt)] = fi.Size()
		case strings.HasSuffix(name, endExt) && ValidSession(strings.TrimSuffix(name, endExt)):
			markers[strings.TrimSuffix(name, endExt)] = true
		}
	}
	for id, e := range s.recs {
		if e.creating || e.live != nil {
			continue
		}
		size, ok := files[id]
		if !ok {
			s.used -= e.size
			delete(s.recs, id)
			continue
		}
		s.used += size - e.size
		e.size = size
	}
	for id, size := range files {
		if _, ok := s.recs[id]; ok {
			continue
		}
		e := &entry{size: size}
		if markers[id] {
			s.readMarker(id, e)
		}
		s.recs[id] = e
		s.used += size
	}
	for id := range markers {
		if _, ok := s.recs[id]; ok {
			continue
		}
		// Prune removes the recording first, then its marker: finish that.
		if err := os.Remove(s.endPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("cannot remove end marker without recording", "session", id, "err", err)
		}
		changed = true
	}
	if changed {
		s.syncDir()
	}
	return nil
}

// readMarker loads the end marker of id into e. An unreadable or damaged
// marker leaves the recording unended (kept), which is the safe side.
func (s *Store) readMarker(id string, e *entry) {
	b, err := os.ReadFile(s.endPath(id))
	if err != nil {
		s.log.Warn("cannot read end marker; keeping the recording as unended", "session", id, "err", err)
		return
	}
	var m endMarker
	if err := json.Unmarshal(b, &m); err != nil || m.Session != id {
		s.log.Warn("damaged end marker; keeping the recording as unended", "session", id, "err", err)
		return
	}
	e.ended, e.end, e.seq = true, m.Ended, m.Seq
}

// syncDir fsyncs the directory so that creates, renames and removals in it
// are durable. Failures are logged: the files themselves are synced.
func (s *Store) syncDir() {
	d, err := os.Open(s.dir)
	if err == nil {
		err = s.o.syncFile(d)
		_ = d.Close()
	}
	if err != nil {
		s.log.Warn("cannot sync recordings directory", "err", err)
	}
}

// Create prunes if needed, then creates the recording of session with
// header h (h.Session, if empty, is set to session) and returns its Writer.
// The Writer's growth counts towards the store's usage from the first byte.
//
// It fails with ErrFull if the recordings use the effective cap or more
// after pruning, ErrInvalidSession for an id that cannot name a file, and an
// error matching fs.ErrExist if the session already has a recording. A
// pruning failure is logged and does not by itself refuse the session.
//
// The cap decides whether a recording may start; concurrent Creates may all
// pass the check and live recordings may grow past the cap. An owner that
// must bound a running session compares Usage while relaying.
func (s *Store) Create(session string, h Header) (*Writer, error) {
	if !ValidSession(session) {
		return nil, fmt.Errorf("create recording %q: %w", session, ErrInvalidSession)
	}
	if h.Session == "" {
		h.Session = session
	} else if h.Session != session {
		return nil, fmt.Errorf("create recording %s: header names session %q", session, h.Session)
	}
	if _, _, err := s.Prune(); err != nil {
		s.log.Warn("pruning before a new recording failed", "session", session, "err", err)
	}
	used, capacity := s.Usage()
	if used >= capacity {
		return nil, fmt.Errorf("%w (recordings use %d bytes, cap %d bytes)", ErrFull, used, capacity)
	}
	s.mu.Lock()
	if _, ok := s.recs[session]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("create recording %s: %w", session, fs.ErrExist)
	}
	e := &entry{creating: true}
	s.recs[session] = e
	s.mu.Unlock()

	w, err := create(s.Path(session), h, &Writer{
		syncFile: s.o.syncFile,
		onGrowth: func(n int64) {
			s.mu.Lock()
			e.size += n
			s.used += n
			s.mu.Unlock()
		},
		onClose: func() {
			s.mu.Lock()
			e.live = nil
			s.mu.Unlock()
		},
	})
	s.mu.Lock()
	e.creating = false
	if err != nil {
		s.used -= e.size
		delete(s.recs, session)
		s.mu.Unlock()
		return nil, fmt.Errorf("create recording %s: %w", session, err)
	}
	e.live = w
	s.mu.Unlock()
	s.syncDir()
	return w, nil
}

// Ended records, durably, that session ended and that telemetry seq
// endEventSeq carries its signed session-end event; from then on Prune may
// delete the recording once Delivered(endEventSeq) is true. Calling it
// again replaces the seq (the last call wins). A recording still being
// written is never pruned, even when ended. It fails with ErrInvalidSession
// or ErrUnknownSession, or if the end marker cannot be written.
func (s *Store) Ended(session string, endEventSeq uint64) error {
	if !ValidSession(session) {
		return fmt.Errorf("end recording %q: %w", session, ErrInvalidSession)
	}
	s.endMu.Lock()
	defer s.endMu.Unlock()
	s.mu.Lock()
	_, ok := s.recs[session]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("end recording %s: %w", session, ErrUnknownSession)
	}
	m := endMarker{Session: session, Ended: s.clock.Now().UTC(), Seq: endEventSeq}
	if err := s.writeMarker(m); err != nil {
		return fmt.Errorf("end recording %s: %w", session, err)
	}
	s.mu.Lock()
	e, ok := s.recs[session]
	if ok {
		e.ended, e.end, e.seq = true, m.Ended, m.Seq
	}
	s.mu.Unlock()
	if !ok { // deleted by hand and rescanned meanwhile
		_ = os.Remove(s.endPath(session))
		return fmt.Errorf("end recording %s: %w", session, ErrUnknownSession)
	}
	return nil
}

// writeMarker writes m atomically: temp file (0600), fsync, rename, fsync
// of the directory.
func (s *Store) writeMarker(m endMarker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode end marker: %w", err)
	}
	f, err := os.CreateTemp(s.dir, "."+m.Session+endExt+"-*"+tmpExt)
	if err != nil {
		return fmt.Errorf("write end marker: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = s.o.syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.endPath(m.Session))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write end marker: %w", err)
	}
	s.syncDir()
	return nil
}

// Usage returns the bytes the recordings use and the effective cap:
// MaxBytes, or MaxFreeShare of (available + used bytes) if that is smaller.
func (s *Store) Usage() (bytes int64, capacity int64) {
	s.mu.Lock()
	used := s.used
	s.mu.Unlock()
	c, _ := s.capacity(used)
	return used, c
}

// capacity returns the effective cap and the share cap (0 if none or
// unknown) for used bytes.
func (s *Store) capacity(used int64) (capacity, share int64) {
	capacity = s.o.MaxBytes
	if s.o.MaxFreeShare <= 0 {
		return capacity, 0
	}
	avail, err := s.o.DiskAvailable(s.dir)
	s.mu.Lock()
	if err != nil {
		msg := "free disk space unknown, capping recordings at MaxBytes only: " + err.Error()
		if msg != s.lastDiskErr {
			s.log.Warn("free disk space unknown; capping recordings at MaxBytes only", "err", err)
		}
		s.lastDiskErr, s.lastErr = msg, msg
		s.mu.Unlock()
		return capacity, 0
	}
	s.lastDiskErr = ""
	s.mu.Unlock()
	share = int64(s.o.MaxFreeShare * float64(max(avail, 0)+used))
	return min(capacity, share), share
}

// Prune deletes ended recordings whose session-end event central has
// received (Delivered(seq) true), oldest end first, while the recordings use
// LowWater of the effective cap or more; with Retain set it also deletes
// such recordings that ended longer ago than Retain. It never deletes a
// live recording, one without end marker, or one whose event is not
// delivered. It first rescans the directory (files deleted by hand leave the
// accounting).
//
// It stops at the first Delivered error and returns it with what was
// removed so far; failures to delete a file are logged, skipped and
// returned joined. Concurrent calls are serialised.
func (s *Store) Prune() (removed int, freed int64, err error) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	type cand struct {
		id  string
		end time.Time
		seq uint64
	}
	s.mu.Lock()
	if err := s.scanLocked(false); err != nil {
		s.lastErr = "prune: " + err.Error()
		s.mu.Unlock()
		return 0, 0, fmt.Errorf("prune recordings: %w", err)
	}
	used := s.used
	var cands []cand
	for id, e := range s.recs {
		if e.ended && e.live == nil && !e.creating {
			cands = append(cands, cand{id, e.end, e.seq})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(cands, func(a, b cand) int {
		if c := a.end.Compare(b.end); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	capacity, _ := s.capacity(used)
	low := int64(LowWater * float64(capacity))
	now := s.clock.Now()
	var (
		gone []Removed
		errs []error
	)
	for _, c := range cands {
		expired := s.o.Retain > 0 && now.Sub(c.end) > s.o.Retain
		s.mu.Lock()
		used = s.used
		s.mu.Unlock()
		if used < low && !expired {
			break // candidates are in end order: later ones are not expired either
		}
		if s.o.Delivered == nil {
			break
		}
		ok, derr := s.o.Delivered(c.seq)
		if derr != nil {
			errs = append(errs, fmt.Errorf("prune recordings: ask whether central has session-end event %d of %s: %w", c.seq, c.id, derr))
			break
		}
		if !ok {
			continue
		}
		if s.o.Archived != nil {
			ok, aerr := s.o.Archived(c.id)
			if aerr != nil {
				errs = append(errs, fmt.Errorf("prune recordings: ask whether %s is archived: %w", c.id, aerr))
				continue
			}
			if !ok {
				continue
			}
		}
		s.mu.Lock()
		e, ok := s.recs[c.id]
		if !ok || e.live != nil || e.creating || !e.ended || e.seq != c.seq {
			s.mu.Unlock()
			continue
		}
		if rerr := os.Remove(s.Path(c.id)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			s.mu.Unlock()
			s.log.Error("cannot delete recording", "session", c.id, "err", rerr)
			errs = append(errs, fmt.Errorf("prune recordings: %w", rerr))
			continue
		}
		if rerr := os.Remove(s.endPath(c.id)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			s.log.Warn("cannot delete end marker; removed at next open", "session", c.id, "err", rerr)
		}
		delete(s.recs, c.id)
		s.used -= e.size
		s.removed++
		s.removedBytes += e.size
		s.mu.Unlock()
		removed++
		freed += e.size
		gone = append(gone, Removed{Session: c.id, File: c.id + recExt, Bytes: e.size, Ended: c.end, EndSeq: c.seq})
	}
	err = errors.Join(errs...)
	s.mu.Lock()
	s.lastPrune = now
	if err != nil {
		s.lastErr = err.Error()
	}
	s.mu.Unlock()
	if removed > 0 {
		s.syncDir()
		s.log.Info("pruned recordings delivered to central", "removed", removed, "freed_bytes", freed)
	}
	if s.o.OnRemove != nil {
		for _, r := range gone {
			s.o.OnRemove(r)
		}
	}
	return removed, freed, err
}

// Unended returns, sorted, the sessions whose recording is not being written
// by this store and has no end marker: their session never ended (the
// gateway stopped during it, or the recording predates the store). They are
// kept until Ended is called for them; the owner should emit their
// session-end events and call Ended.
func (s *Store) Unended() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, e := range s.recs {
		if !e.ended && e.live == nil && !e.creating {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Stats returns a snapshot for status pages.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	st := Stats{Dir: s.dir, Bytes: s.used, MaxBytes: s.o.MaxBytes, Recordings: len(s.recs),
		Removed: s.removed, RemovedBytes: s.removedBytes, LastPrune: s.lastPrune}
	for _, e := range s.recs {
		switch {
		case e.live != nil || e.creating:
			st.Live++
		case e.ended:
			st.Ended++
		default:
			st.Unended++
		}
	}
	s.mu.Unlock()
	st.Cap, st.ShareCap = s.capacity(st.Bytes)
	s.mu.Lock()
	st.LastError = s.lastErr
	s.mu.Unlock()
	return st
}

// Run syncs live recordings every FsyncEvery and prunes every PruneEvery
// until ctx is done, then syncs live recordings once more and returns nil.
// It runs no other goroutine. A second concurrent Run returns an error.
func (s *Store) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("recording store: Run is already running")
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	syncT := s.clock.NewTicker(s.o.FsyncEvery)
	defer syncT.Stop()
	pruneT := s.clock.NewTicker(s.o.PruneEvery)
	defer pruneT.Stop()
	for {
		select {
		case <-ctx.Done():
			s.SyncLive()
			return nil
		case <-syncT.Chan():
			s.SyncLive()
		case <-pruneT.Chan():
			if _, _, err := s.Prune(); err != nil {
				s.log.Warn("periodic pruning of recordings failed", "err", err)
			}
		}
		if s.tickDone != nil {
			s.tickDone()
		}
	}
}

// SyncLive fsyncs every live recording written since its last sync. A
// failure is logged once per recording and makes that Writer's later
// Writes fail (see Writer.Sync). Run calls it every FsyncEvery.
func (s *Store) SyncLive() {
	type live struct {
		id string
		e  *entry
		w  *Writer
	}
	var ws []live
	s.mu.Lock()
	for id, e := range s.recs {
		if e.live != nil {
			ws = append(ws, live{id, e, e.live})
		}
	}
	s.mu.Unlock()
	for _, l := range ws {
		err := l.w.Sync()
		if err == nil {
			continue
		}
		s.mu.Lock()
		first := !l.e.syncErr
		l.e.syncErr = true
		s.lastErr = fmt.Sprintf("sync recording %s: %v", l.id, err)
		s.mu.Unlock()
		if first {
			s.log.Error("cannot sync live recording; its session will be cut", "session", l.id, "err", err)
		}
	}
}
