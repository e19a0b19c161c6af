package recording

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/wardgate/wardgate/wire/recchain"
)

// The recording format and its read side live in wire/recchain (central
// decodes recordings with the same code); these names keep the recorder's
// callers unchanged.
const (
	TypeHeader  = recchain.TypeHeader
	TypeData    = recchain.TypeData
	TypeTrailer = recchain.TypeTrailer
	TypeNote    = recchain.TypeNote
)

// Directions.
const (
	ToDevice   = recchain.ToDevice
	FromDevice = recchain.FromDevice
)

type (
	// Direction of a data frame.
	Direction = recchain.Direction
	// Header describes the session a recording belongs to.
	Header = recchain.Header
	// Trailer closes a recording.
	Trailer = recchain.Trailer
	// Note is a gateway remark in the recording's timeline.
	Note = recchain.Note
	// ChainError names the first frame that fails verification.
	ChainError = recchain.ChainError
	// Summary is what Verify learned about a recording.
	Summary = recchain.Decoded
	// Frame is one verified frame passed to Verify's callback.
	Frame = recchain.Frame
)

// Verify checks the hash chain of the recording in r, see recchain.Verify.
func Verify(r io.Reader, fn func(Frame)) (*Summary, error) { return recchain.Verify(r, fn) }

// Replay verifies r and prints its timeline, see recchain.Replay.
func Replay(r io.Reader, w io.Writer) error { return recchain.Replay(r, w) }

// ReplayText verifies r and prints its transcript, see recchain.ReplayText.
func ReplayText(r io.Reader, w io.Writer) (*Summary, error) { return recchain.ReplayText(r, w) }

// CheckHash compares a verified summary's final hash with want (hex), see
// recchain.CheckHash.
func CheckHash(s *Summary, want string) error { return recchain.CheckHash(s, want) }

// Writer appends frames to a recording file. Safe for concurrent use.
//
// Every frame is flushed to the operating system as it is written; Sync and
// Close make it durable. A Writer from Store.Create is also synced by the
// store's Run at least every StoreOptions.FsyncEvery.
type Writer struct {
	mu       sync.Mutex
	f        *os.File
	bw       *bufio.Writer
	prev     [sha256.Size]byte
	size     int64
	frames   int64
	toDev    int64
	fromDev  int64
	closed   bool
	final    []byte
	err      error
	onGrowth func(n int64)

	synced   int64                // size at the last successful sync
	syncFile func(*os.File) error // nil: (*os.File).Sync
	onClose  func()               // called once, under mu, when Close finishes
}

// Create creates the recording file at path (mode 0600, which must not exist)
// and writes the header frame. onGrowth, if non-nil, is called with the number
// of bytes each frame adds to the file (for disk accounting).
func Create(path string, h Header, onGrowth func(n int64)) (*Writer, error) {
	return create(path, h, &Writer{onGrowth: onGrowth})
}

// create opens path and writes the header frame into w, whose hooks the
// caller has set.
func create(path string, h Header, w *Writer) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create recording: %w", err)
	}
	w.f, w.bw = f, bufio.NewWriterSize(f, 64<<10)
	if err := w.append(recchain.Body{Type: TypeHeader, Time: h.Start.UnixNano(), Header: &h}, true); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return w, nil
}

func (w *Writer) append(b recchain.Body, flush bool) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	out, err := recchain.EncodeFrame(&w.prev, b)
	if err != nil {
		return err
	}
	if _, err := w.bw.Write(out); err != nil {
		w.err = fmt.Errorf("write recording: %w", err)
		return w.err
	}
	if flush {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("write recording: %w", err)
			return w.err
		}
	}
	w.size += int64(len(out))
	w.frames++
	if w.onGrowth != nil {
		w.onGrowth(int64(len(out)))
	}
	return nil
}

// Write records p as sent in direction d at time t. The bytes are copied.
func (w *Writer) Write(d Direction, t time.Time, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch d {
	case ToDevice:
		w.toDev += int64(len(p))
	case FromDevice:
		w.fromDev += int64(len(p))
	}
	return w.append(recchain.Body{Type: TypeData, Time: t.UnixNano(), Dir: d, Data: p}, true)
}

// Size returns the bytes written so far.
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Sync makes the frames written so far durable (fsync). It does nothing if
// nothing was written since the last successful sync. A failed sync is
// sticky: the bytes may not be on disk, so later Writes and Close return the
// same error and the caller cuts the session (no unrecorded access). After
// Close, Sync returns Close's error.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.closed {
		return w.err
	}
	if w.size == w.synced {
		return nil
	}
	if err := w.sync(); err != nil {
		w.err = err
		return err
	}
	return nil
}

// sync fsyncs the file; w.mu is held and every frame is already flushed.
func (w *Writer) sync() error {
	sf := w.syncFile
	if sf == nil {
		sf = (*os.File).Sync
	}
	if err := sf(w.f); err != nil {
		return fmt.Errorf("sync recording: %w", err)
	}
	w.synced = w.size
	return nil
}

// Close writes the trailer, syncs and closes the file, and returns the final
// hash. Calling Close again returns the same hash.
func (w *Writer) Close(end time.Time, reason string) ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.final, w.err
	}
	if w.onClose != nil {
		defer w.onClose()
	}
	tr := &Trailer{End: end, ToDevice: w.toDev, FromDev: w.fromDev, Frames: w.frames + 1, EndReason: reason}
	err := w.append(recchain.Body{Type: TypeTrailer, Time: end.UnixNano(), Trailer: tr}, true)
	w.closed = true
	w.final = append([]byte(nil), w.prev[:]...)
	if serr := w.sync(); err == nil && serr != nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close recording: %w", cerr)
	}
	if err != nil && w.err == nil {
		w.err = err
	}
	return w.final, err
}
