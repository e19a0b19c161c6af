package recchain

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
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

// Body is the hashed content of a frame (the writer's input to
// EncodeFrame).
type Body struct {
	Type    uint8     `cbor:"1,keyasint"`
	Time    int64     `cbor:"2,keyasint"` // unix nanoseconds
	Dir     Direction `cbor:"3,keyasint,omitempty"`
	Data    []byte    `cbor:"4,keyasint,omitempty"`
	Header  *Header   `cbor:"5,keyasint,omitempty"`
	Trailer *Trailer  `cbor:"6,keyasint,omitempty"`
	Note    *Note     `cbor:"7,keyasint,omitempty"`
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	// strictMode decodes frames, and frame bodies for Verify: unknown
	// fields are errors (Check, which only reads a body's type, is lenient
	// so that central accepts recordings of newer gateways).
	strictMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{MaxNestedLevels: 8, MaxArrayElements: 16, MaxMapPairs: 16,
			DupMapKey: cbor.DupMapKeyEnforcedAPF, ExtraReturnErrors: cbor.ExtraDecErrorUnknownField}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// EncodeFrame encodes b as the next frame after the chain head *prev and
// advances *prev to the frame's hash: the one encoder of the format, used
// by the gateway's recorder.
func EncodeFrame(prev *[sha256.Size]byte, b Body) ([]byte, error) {
	raw, err := encMode.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	h := sha256.New()
	h.Write(prev[:])
	h.Write(raw)
	var next [sha256.Size]byte
	copy(next[:], h.Sum(nil))
	out, err := encMode.Marshal(frame{Body: raw, Hash: next[:]})
	if err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	*prev = next
	return out, nil
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

// Decoded is what Verify learned about a recording.
type Decoded struct {
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
func Verify(r io.Reader, fn func(Frame)) (*Decoded, error) {
	c := newChain(r)
	s := &Decoded{}
	for i := 0; ; i++ {
		body, sum, err := c.next()
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
			return s, err
		}
		if s.Trailer != nil {
			return s, &ChainError{Frame: i, Reason: "data after the trailer"}
		}
		var b Body
		if err := strictMode.Unmarshal(body, &b); err != nil {
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
	_, err := ReplaySummary(r, w)
	return err
}

// ReplaySummary is Replay that also returns what Verify learned.
func ReplaySummary(r io.Reader, w io.Writer) (*Decoded, error) {
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
		return s, err
	}
	tr := s.Trailer
	fmt.Fprintf(bw, "\nend     %s (duration %s", tr.End.UTC().Format(time.RFC3339Nano), tr.End.Sub(s.Header.Start).Round(time.Millisecond))
	if tr.EndReason != "" {
		fmt.Fprintf(bw, ", %s", tr.EndReason)
	}
	fmt.Fprintf(bw, ")\nbytes   vendor->device %d, device->vendor %d\n", tr.ToDevice, tr.FromDev)
	fmt.Fprintf(bw, "chain verified: %d frames, final hash %s\n", s.Frames, hex.EncodeToString(s.FinalHash))
	return s, nil
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

// Note kinds.
const (
	NoteInject    = "inject"    // the gateway logged in to a service account (the secret is never recorded)
	NoteEncrypted = "encrypted" // the tunnel carries TLS or SSH: its data frames are ciphertext
)

// Note is a gateway remark in the recording's timeline.
type Note struct {
	Kind string `cbor:"1,keyasint" json:"kind"`
	Text string `cbor:"2,keyasint" json:"text"`
}

// CheckHash compares a verified summary's final hash with want (hex, as
// the session-end event carries it; case and surrounding space ignored).
func CheckHash(s *Decoded, want string) error {
	w, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(want)))
	if err != nil || len(w) != 32 {
		return fmt.Errorf("expected hash %q is not 64 hex digits (copy the hash of the session-end event)", want)
	}
	if !bytes.Equal(s.FinalHash, w) {
		return fmt.Errorf("%w: the file ends in %s, the session-end event says %s: this is not the recording central was told about, or it was cut or altered after the end",
			ErrHashMismatch, hex.EncodeToString(s.FinalHash), hex.EncodeToString(w))
	}
	return nil
}

// ReplayText verifies the recording in r and writes its whole transcript to
// w: every data frame with its offset from the start, direction and bytes
// (printable text as is, one line per line of text; other bytes as hex),
// the gateway's notes, and the verdict. Like Replay, it returns a
// *ChainError for the first bad frame, after printing the frames before it.
func ReplayText(r io.Reader, w io.Writer) (*Decoded, error) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	var start time.Time
	s, err := Verify(r, func(f Frame) {
		off := f.Time.Sub(start).Seconds()
		switch {
		case f.Header != nil:
			h := f.Header
			start = h.Start
			fmt.Fprintf(bw, "# session %s grant %s\n# vendor %s\n# device %s port %s\n# start %s\n",
				h.Session, h.Grant, h.Vendor, h.Device, portName(h.Port), h.Start.UTC().Format(time.RFC3339Nano))
		case f.Trailer != nil:
		case f.Note != nil:
			fmt.Fprintf(bw, "[%+10.3fs] ## %s: %s\n", off, f.Note.Kind, printableLine(f.Note.Text))
		default:
			arrow := ">>"
			if f.Dir == FromDevice {
				arrow = "<<"
			}
			writeTranscript(bw, fmt.Sprintf("[%+10.3fs] %s ", off, arrow), f.Data)
		}
	})
	if err != nil {
		fmt.Fprintf(bw, "\nFAILED: %v\n", err)
		return s, err
	}
	tr := s.Trailer
	fmt.Fprintf(bw, "# end %s (duration %s", tr.End.UTC().Format(time.RFC3339Nano), tr.End.Sub(s.Header.Start).Round(time.Millisecond))
	if tr.EndReason != "" {
		fmt.Fprintf(bw, ", %s", printableLine(tr.EndReason))
	}
	fmt.Fprintf(bw, ")\n# bytes vendor->device %d, device->vendor %d\n", tr.ToDevice, tr.FromDev)
	fmt.Fprintf(bw, "# chain verified: %d frames, final hash %s\n", s.Frames, hex.EncodeToString(s.FinalHash))
	return s, nil
}

func portName(p int) string {
	if p == -1 {
		return "console"
	}
	return fmt.Sprint(p)
}

// writeTranscript writes p after prefix: runs of printable text (tabs,
// CR and LF included) as text, broken into lines, each continuation line
// indented; any other byte run as hex in angle brackets.
func writeTranscript(w *bufio.Writer, prefix string, p []byte) {
	indent := strings.Repeat(" ", len(prefix))
	w.WriteString(prefix)
	atStart := true
	for i := 0; i < len(p); {
		c := p[i]
		switch {
		case c == '\n':
			w.WriteString("\\n\n")
			i++
			if i < len(p) {
				w.WriteString(indent)
			}
			atStart = i >= len(p)
			continue
		case c == '\r':
			w.WriteString("\\r")
		case c == '\t':
			w.WriteString("\\t")
		case c >= 0x20 && c < 0x7f:
			if c == '\\' {
				w.WriteString("\\\\")
			} else {
				w.WriteByte(c)
			}
		default:
			j := i
			for j < len(p) && (p[j] < 0x20 || p[j] >= 0x7f) && p[j] != '\n' && p[j] != '\r' && p[j] != '\t' {
				j++
			}
			fmt.Fprintf(w, "<%s>", hex.EncodeToString(p[i:j]))
			i = j
			continue
		}
		atStart = false
		i++
	}
	if !atStart {
		w.WriteByte('\n')
	}
}

// printableLine makes s one printable line.
func printableLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// ErrHashMismatch: the recording verifies but its final hash is not the
// one expected (the hash the session-end event carried).
var ErrHashMismatch = errors.New("recording final hash does not match the expected hash")
