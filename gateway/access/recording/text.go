package recording

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

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

// Note records a gateway remark at time t (for example that the gateway
// sent a service account's secret, never the secret itself).
func (w *Writer) Note(t time.Time, kind, text string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.append(body{Type: TypeNote, Time: t.UnixNano(), Note: &Note{Kind: kind, Text: text}}, true)
}

// CheckHash compares a verified summary's final hash with want (hex, as
// the session-end event carries it; case and surrounding space ignored).
func CheckHash(s *Summary, want string) error {
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
func ReplayText(r io.Reader, w io.Writer) (*Summary, error) {
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
