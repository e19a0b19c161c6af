package recording

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Frame types.
const (
	TypeHeader  = 1
	TypeData    = 2
	TypeTrailer = 3
	TypeNote    = 4 // a gateway note: credential injection marker, encrypted tunnel
)

// Direction of a data frame.
type Direction uint8

// Directions.
const (
	ToDevice   Direction = 1 // bytes sent by the vendor to the device
	FromDevice Direction = 2 // bytes sent by the device to the vendor
)

func (d Direction) String() string {
	switch d {
	case ToDevice:
		return "vendor->device"
	case FromDevice:
		return "device->vendor"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Header describes the session a recording belongs to.
type Header struct {
	Session string    `cbor:"1,keyasint" json:"session"`
	Grant   string    `cbor:"2,keyasint" json:"grant"`
	Vendor  string    `cbor:"3,keyasint" json:"vendor"`
	Device  string    `cbor:"4,keyasint" json:"device"`
	Port    int       `cbor:"5,keyasint" json:"port"`
	Start   time.Time `cbor:"6,keyasint" json:"start"`
	// ApprovedBy names who approved the grant, as actors print themselves
	// (local:NAME(uid=N), local:button, central:URI). Absent in recordings
	// of older versions.
	ApprovedBy []string `cbor:"7,keyasint,omitempty" json:"approved_by,omitempty"`
}

// Trailer closes a recording.
type Trailer struct {
	End       time.Time `cbor:"1,keyasint" json:"end"`
	ToDevice  int64     `cbor:"2,keyasint" json:"to_device"`
	FromDev   int64     `cbor:"3,keyasint" json:"from_device"`
	Frames    int64     `cbor:"4,keyasint" json:"frames"`
	EndReason string    `cbor:"5,keyasint,omitempty" json:"end_reason,omitempty"`
}

// body is the hashed content of a frame.
type body struct {
	Type    uint8     `cbor:"1,keyasint"`
	Time    int64     `cbor:"2,keyasint"` // unix nanoseconds
	Dir     Direction `cbor:"3,keyasint,omitempty"`
	Data    []byte    `cbor:"4,keyasint,omitempty"`
	Header  *Header   `cbor:"5,keyasint,omitempty"`
	Trailer *Trailer  `cbor:"6,keyasint,omitempty"`
	Note    *Note     `cbor:"7,keyasint,omitempty"`
}

// wire is one element of the CBOR sequence.
type wire struct {
	_    struct{} `cbor:",toarray"`
	Body []byte
	Hash []byte
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		MaxNestedLevels:   8,
		MaxArrayElements:  16,
		MaxMapPairs:       16,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

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
	if err := w.append(body{Type: TypeHeader, Time: h.Start.UnixNano(), Header: &h}, true); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	return w, nil
}

func (w *Writer) append(b body, flush bool) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	raw, err := encMode.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	h := sha256.New()
	h.Write(w.prev[:])
	h.Write(raw)
	copy(w.prev[:], h.Sum(nil))
	out, err := encMode.Marshal(wire{Body: raw, Hash: w.prev[:]})
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
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
	return w.append(body{Type: TypeData, Time: t.UnixNano(), Dir: d, Data: p}, true)
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
	err := w.append(body{Type: TypeTrailer, Time: end.UnixNano(), Trailer: tr}, true)
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

// ChainError reports the first frame (0-based, the header being frame 0) that
// fails verification.
type ChainError struct {
	Frame  int
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("recording frame %d: %s", e.Frame, e.Reason)
}

// Is makes errors.Is(err, ErrBroken) true.
func (e *ChainError) Is(target error) bool { return target == ErrBroken }

// Summary is what Verify learned about a recording.
type Summary struct {
	Header    Header
	Trailer   *Trailer // nil if the recording is truncated
	Frames    int
	FinalHash []byte
}

// Frame is one verified frame passed to Verify's callback.
type Frame struct {
	Index   int
	Type    uint8
	Time    time.Time
	Dir     Direction // data frames only
	Data    []byte    // data frames only
	Header  *Header   // header frame only
	Trailer *Trailer  // trailer frame only
	Note    *Note     // note frame only
}

// Verify checks the hash chain of the recording in r and calls fn (if
// non-nil) for every frame that verified, in order. It returns a *ChainError
// for the first bad frame.
func Verify(r io.Reader, fn func(Frame)) (*Summary, error) {
	dec := decMode.NewDecoder(r)
	var prev [sha256.Size]byte
	s := &Summary{}
	for i := 0; ; i++ {
		var wf wire
		err := dec.Decode(&wf)
		if err == io.EOF {
			if i == 0 {
				return s, &ChainError{Frame: 0, Reason: "empty recording: no header frame"}
			}
			if s.Trailer == nil {
				return s, &ChainError{Frame: i, Reason: "recording truncated: no trailer (session still running, or the gateway stopped during it)"}
			}
			return s, nil
		}
		if err != nil {
			return s, &ChainError{Frame: i, Reason: fmt.Sprintf("undecodable frame (recording altered or damaged): %v", err)}
		}
		if s.Trailer != nil {
			return s, &ChainError{Frame: i, Reason: "data after the trailer"}
		}
		h := sha256.New()
		h.Write(prev[:])
		h.Write(wf.Body)
		sum := h.Sum(nil)
		if !bytes.Equal(sum, wf.Hash) {
			return s, &ChainError{Frame: i, Reason: "hash does not match the chain (recording altered or damaged)"}
		}
		copy(prev[:], sum)
		var b body
		if err := decMode.Unmarshal(wf.Body, &b); err != nil {
			return s, &ChainError{Frame: i, Reason: fmt.Sprintf("undecodable frame body: %v", err)}
		}
		f := Frame{Index: i, Type: b.Type, Time: time.Unix(0, b.Time)}
		switch {
		case i == 0:
			if b.Type != TypeHeader || b.Header == nil {
				return s, &ChainError{Frame: 0, Reason: "first frame is not a header"}
			}
			s.Header = *b.Header
			f.Header = b.Header
		case b.Type == TypeData:
			if b.Dir != ToDevice && b.Dir != FromDevice {
				return s, &ChainError{Frame: i, Reason: "unknown direction"}
			}
			f.Dir, f.Data = b.Dir, b.Data
		case b.Type == TypeNote && b.Note != nil:
			f.Note = b.Note
		case b.Type == TypeTrailer && b.Trailer != nil:
			s.Trailer = b.Trailer
			f.Trailer = b.Trailer
		default:
			return s, &ChainError{Frame: i, Reason: fmt.Sprintf("unexpected frame type %d", b.Type)}
		}
		s.Frames = i + 1
		s.FinalHash = append(s.FinalHash[:0], sum...)
		if fn != nil {
			fn(f)
		}
	}
}

// Replay verifies the recording in r and prints a readable timeline to w:
// the header, one line per data frame (offset from start, frame index,
// direction, byte count, printable preview) and the verdict. It returns a
// *ChainError naming the first bad frame if verification fails; the frames
// before it are printed.
func Replay(r io.Reader, w io.Writer) error {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	var start time.Time
	s, err := Verify(r, func(f Frame) {
		switch {
		case f.Header != nil:
			h := f.Header
			start = h.Start
			fmt.Fprintf(bw, "session %s  grant %s\nvendor  %s\ndevice  %s port %s\nstart   %s\n",
				h.Session, h.Grant, h.Vendor, h.Device, portName(h.Port), h.Start.UTC().Format(time.RFC3339Nano))
			if len(h.ApprovedBy) > 0 {
				fmt.Fprintf(bw, "approved by %s\n", strings.Join(h.ApprovedBy, ", "))
			}
			fmt.Fprintln(bw)
		case f.Trailer != nil:
		case f.Note != nil:
			fmt.Fprintf(bw, "%+10.3fs  #%-5d note %-9s %s\n", f.Time.Sub(start).Seconds(), f.Index, f.Note.Kind, preview([]byte(f.Note.Text), 200))
		default:
			fmt.Fprintf(bw, "%+10.3fs  #%-5d %-14s %6d B  %s\n", f.Time.Sub(start).Seconds(), f.Index, f.Dir, len(f.Data), preview(f.Data, 48))
		}
	})
	if err != nil {
		fmt.Fprintf(bw, "\nFAILED: %v\n", err)
		return err
	}
	tr := s.Trailer
	fmt.Fprintf(bw, "\nend     %s (duration %s", tr.End.UTC().Format(time.RFC3339Nano), tr.End.Sub(s.Header.Start).Round(time.Millisecond))
	if tr.EndReason != "" {
		fmt.Fprintf(bw, ", %s", tr.EndReason)
	}
	fmt.Fprintf(bw, ")\nbytes   vendor->device %d, device->vendor %d\n", tr.ToDevice, tr.FromDev)
	fmt.Fprintf(bw, "chain verified: %d frames, final hash %s\n", s.Frames, hex.EncodeToString(s.FinalHash))
	return nil
}
func preview(p []byte, n int) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for i, c := range p {
		if i == n {
			sb.WriteString("...")
			break
		}
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			sb.WriteByte(c)
		} else {
			sb.WriteByte('.')
		}
	}
	sb.WriteByte('"')
	return sb.String()
}
