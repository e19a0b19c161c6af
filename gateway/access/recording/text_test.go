package recording

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReplayTextAndNotes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.cbor")
	w, err := Create(path, Header{Session: "K7-1", Grant: "K7", Vendor: "spiffe://td/vendor/acme/jo", Device: "mon-03", Port: -1, Start: t0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Note(t0.Add(time.Second), NoteInject, "sent the secret of account acme-svc (withheld)"))
	must(w.Write(ToDevice, t0.Add(2*time.Second), []byte("show log\r\n")))
	must(w.Write(FromDevice, t0.Add(3*time.Second), []byte("line one\nline two\x1b[0m\x00\xff\\end")))
	final, err := w.Close(t0.Add(4*time.Second), "grant expired")
	must(err)
	if err := w.Note(t0, NoteInject, "late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Note after Close: %v", err)
	}
	data, _ := os.ReadFile(path)
	var out bytes.Buffer
	s, err := ReplayText(bytes.NewReader(data), &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		"# device mon-03 port console",
		"[    +1.000s] ## inject: sent the secret of account acme-svc (withheld)",
		"[    +2.000s] >> show log\\r\\n",
		"[    +3.000s] << line one\\n\n" + strings.Repeat(" ", 17) + "line two<1b>[0m<00ff>\\\\end\n",
		"# end 2026-11-28T10:00:04Z (duration 4s, grant expired)",
		"# chain verified: 5 frames, final hash " + hex.EncodeToString(final),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, out.String())
		}
	}
	// The timeline shows notes too.
	out.Reset()
	if err := Replay(bytes.NewReader(data), &out); err != nil || !strings.Contains(out.String(), "note inject") {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// CheckHash: the right hash, upper case and spaces allowed; a wrong one
	// and a malformed one refused with what to do.
	if err := CheckHash(s, " "+strings.ToUpper(hex.EncodeToString(final))+"\n"); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Repeat([]byte{0xab}, 32)
	if err := CheckHash(s, hex.EncodeToString(bad)); !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), "the session-end event says abab") {
		t.Fatalf("%v", err)
	}
	if err := CheckHash(s, "xyz"); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Fatalf("%v", err)
	}
	// A broken chain: ReplayText stops at the bad frame.
	data[len(data)/2] ^= 0xff
	out.Reset()
	if _, err := ReplayText(bytes.NewReader(data), &out); !errors.Is(err, ErrBroken) || !strings.Contains(out.String(), "FAILED: recording frame") {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

// FuzzReplayText: any bytes, never a panic.
func FuzzReplayText(f *testing.F) {
	path, _ := writeSample(f, f.TempDir())
	data, _ := os.ReadFile(path)
	f.Add(data)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		_, _ = ReplayText(bytes.NewReader(in), &out)
	})
}
