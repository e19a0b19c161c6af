package recording

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/wardgate/wardgate/wire/recchain"
)

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func writeSample(t testing.TB, dir string) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "s.cbor")
	var grown int64
	w, err := Create(path, Header{Session: "ABC123-1", Grant: "ABC123", Vendor: "spiffe://td/vendor/acme/jo", Device: "pump-07", Port: 23, Start: t0}, func(n int64) { grown += n })
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		d Direction
		p string
	}{{ToDevice, "login\r\n"}, {FromDevice, "password:"}, {ToDevice, "\x00\x01secret\xff"}, {FromDevice, "OK"}}
	for i, s := range steps {
		if err := w.Write(s.d, t0.Add(time.Duration(i+1)*time.Second), []byte(s.p)); err != nil {
			t.Fatal(err)
		}
	}
	final, err := w.Close(t0.Add(10*time.Second), "grant expired")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := w.Close(t0.Add(time.Hour), "x")
	if !bytes.Equal(final, again) {
		t.Fatal("second Close returned another hash")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != grown || fi.Size() != w.Size() {
		t.Fatalf("size %d, growth callback %d, Size() %d", fi.Size(), grown, w.Size())
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	return path, final
}

func TestRoundTrip(t *testing.T) {
	path, final := writeSample(t, t.TempDir())
	data, _ := os.ReadFile(path)
	var out bytes.Buffer
	if err := Replay(bytes.NewReader(data), &out); err != nil {
		t.Fatalf("replay: %v\n%s", err, out.String())
	}
	s, err := Verify(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.FinalHash, final) || s.Frames != 6 || s.Trailer.ToDevice != 16 || s.Trailer.FromDev != 11 {
		t.Fatalf("summary %+v trailer %+v", s, s.Trailer)
	}
	txt := out.String()
	for _, want := range []string{"pump-07 port 23", "vendor->device", "\"login..\"", "\"..secret.\"", "chain verified: 6 frames", "grant expired"} {
		if !strings.Contains(txt, want) {
			t.Errorf("timeline lacks %q:\n%s", want, txt)
		}
	}
	t.Log("\n" + txt)
}

// frameOffsets returns the byte offset at which each frame starts.
func frameOffsets(t *testing.T, data []byte) []int {
	var offs []int
	rest := data
	for len(rest) > 0 {
		offs = append(offs, len(data)-len(rest))
		var w [2][]byte
		var err error
		rest, err = cbor.UnmarshalFirst(rest, &w)
		if err != nil {
			t.Fatal(err)
		}
	}
	return offs
}

func TestFlipEveryByteNamesFrame(t *testing.T) {
	path, _ := writeSample(t, t.TempDir())
	data, _ := os.ReadFile(path)
	offs := frameOffsets(t, data)
	frameOf := func(pos int) int {
		f := 0
		for i, o := range offs {
			if pos >= o {
				f = i
			}
		}
		return f
	}
	for pos := range data {
		bad := bytes.Clone(data)
		bad[pos] ^= 0x01
		var out bytes.Buffer
		err := Replay(bytes.NewReader(bad), &out)
		var ce *ChainError
		if !errors.As(err, &ce) || !errors.Is(err, ErrBroken) {
			t.Fatalf("byte %d flipped: err %v", pos, err)
		}
		// A flip in a frame's CBOR head may make the decoder consume the
		// following frames; the first reported frame is never later than
		// the altered one.
		if ce.Frame > frameOf(pos) {
			t.Fatalf("byte %d (frame %d) flipped: reported frame %d", pos, frameOf(pos), ce.Frame)
		}
		if !strings.Contains(out.String(), "FAILED: recording frame") {
			t.Fatalf("output lacks verdict: %s", out.String())
		}
	}
}

func TestFlipDataByteNamesExactFrame(t *testing.T) {
	path, _ := writeSample(t, t.TempDir())
	data, _ := os.ReadFile(path)
	i := bytes.Index(data, []byte("password:"))
	data[i+2] ^= 0x20
	var out bytes.Buffer
	err := Replay(bytes.NewReader(data), &out)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Frame != 2 {
		t.Fatalf("err %v", err)
	}
	if !strings.Contains(out.String(), "recording frame 2: hash does not match") {
		t.Fatalf("output: %s", out.String())
	}
}

func TestTruncatedAndReordered(t *testing.T) {
	path, _ := writeSample(t, t.TempDir())
	data, _ := os.ReadFile(path)
	offs := frameOffsets(t, data)
	cases := []struct {
		name  string
		data  []byte
		frame int
	}{
		{"empty", nil, 0},
		{"no trailer", data[:offs[len(offs)-1]], len(offs) - 1},
		{"cut mid frame", data[:offs[2]+3], 2},
		{"frame removed", append(bytes.Clone(data[:offs[1]]), data[offs[2]:]...), 1},
		{"trailing garbage", append(bytes.Clone(data), 0x00), len(offs)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(c.data), nil)
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Frame != c.frame {
				t.Fatalf("err %v, want frame %d", err, c.frame)
			}
		})
	}
}

func TestForgedChainNeedsHeaderFirst(t *testing.T) {
	// A well-chained sequence whose first frame is data is refused.
	var prev [32]byte
	out, _ := recchain.EncodeFrame(&prev, recchain.Body{Type: TypeData, Time: 1, Dir: ToDevice, Data: []byte("x")})
	_, err := Verify(bytes.NewReader(out), nil)
	var ce *ChainError
	if !errors.As(err, &ce) || ce.Frame != 0 || !strings.Contains(ce.Reason, "not a header") {
		t.Fatalf("err %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	path, _ := writeSample(f, f.TempDir())
	data, _ := os.ReadFile(path)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte{})
	f.Add([]byte{0x82, 0x40, 0x40})
	f.Add([]byte{0x82, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		err := Replay(bytes.NewReader(in), &out)
		if err != nil && !errors.Is(err, ErrBroken) {
			t.Fatalf("error not a ChainError: %v", err)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	w, err := Create(filepath.Join(b.TempDir(), "b.cbor"), Header{Session: "b", Start: t0}, nil)
	if err != nil {
		b.Fatal(err)
	}
	p := bytes.Repeat([]byte("x"), 4096)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if err := w.Write(ToDevice, t0, p); err != nil {
			b.Fatal(err)
		}
	}
	_, _ = w.Close(t0, "")
}

func TestWriterSync(t *testing.T) {
	syncErr := errors.New("EIO")
	tests := []struct {
		name      string
		fail      bool
		wantSyncs int // after Sync, Sync again (nothing new), Write, Sync
	}{
		{"ok", false, 2},
		{"failure is sticky", true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			syncs := 0
			w, err := create(filepath.Join(t.TempDir(), "s.cbor"), Header{Session: "s", Start: t0}, &Writer{syncFile: func(f *os.File) error {
				syncs++
				if tc.fail {
					return syncErr
				}
				return f.Sync()
			}})
			if err != nil {
				t.Fatal(err)
			}
			err = w.Sync()
			if tc.fail != (err != nil) || (tc.fail && !errors.Is(err, syncErr)) {
				t.Fatalf("Sync = %v", err)
			}
			_ = w.Sync() // nothing written since, or already failed: no fsync
			werr := w.Write(ToDevice, t0, []byte("x"))
			if tc.fail != (werr != nil) {
				t.Fatalf("Write after Sync = %v", werr)
			}
			_ = w.Sync()
			if syncs != tc.wantSyncs {
				t.Fatalf("%d fsyncs, want %d", syncs, tc.wantSyncs)
			}
			_, cerr := w.Close(t0, "")
			if tc.fail != (cerr != nil) {
				t.Fatalf("Close = %v", cerr)
			}
			if serr := w.Sync(); !errors.Is(serr, cerr) {
				t.Fatalf("Sync after Close = %v, Close said %v", serr, cerr)
			}
		})
	}
}
