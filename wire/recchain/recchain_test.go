package recchain

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// build makes a chain of frames with the given types.
func build(t testing.TB, types ...uint8) ([]byte, []byte) {
	var buf bytes.Buffer
	var prev [32]byte
	for i, ty := range types {
		body, _ := cbor.Marshal(map[int]any{1: ty, 2: int64(i)})
		h := sha256.New()
		h.Write(prev[:])
		h.Write(body)
		sum := h.Sum(nil)
		copy(prev[:], sum)
		b, err := cbor.Marshal(frame{Body: body, Hash: sum})
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	return buf.Bytes(), prev[:]
}

func TestCheck(t *testing.T) {
	good, head := build(t, 1, 2, 2, 3)
	noTrailer, _ := build(t, 1, 2)
	noHeader, _ := build(t, 2, 3)
	altered := bytes.Clone(good)
	altered[len(altered)/2] ^= 1
	for _, c := range []struct {
		name string
		data []byte
		want []byte
		ok   bool
	}{
		{"complete", good, head, true},
		{"no expectation", good, nil, true},
		{"other head", good, bytes.Repeat([]byte{1}, 32), false},
		{"truncated bytes", good[:len(good)-3], head, false},
		{"no trailer", noTrailer, nil, false},
		{"no header", noHeader, nil, false},
		{"altered", altered, head, false},
		{"after the trailer", append(bytes.Clone(good), good...), nil, false},
		{"empty", nil, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Check(bytes.NewReader(c.data), c.want)
			if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBroken)) {
				t.Fatalf("err = %v", err)
			}
			if c.ok && (s.Frames != 4 || s.Bytes != int64(len(good))) {
				t.Fatalf("summary %+v", s)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	good, _ := build(f, 1, 2, 3)
	f.Add(good)
	f.Add([]byte{0x82, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		if s, err := Check(bytes.NewReader(data), nil); err == nil && len(s.Head) != 32 {
			t.Fatal("accepted without a head")
		}
	})
}
