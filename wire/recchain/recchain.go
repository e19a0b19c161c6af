package recchain

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"
)

// ErrBroken: the chain does not verify, is truncated or does not end in
// the expected hash.
var ErrBroken = errors.New("recording chain broken")

var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{MaxNestedLevels: 8, MaxArrayElements: 16, MaxMapPairs: 16,
		DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()
	if err != nil {
		panic(err)
	}
	return m
}()

type frame struct {
	_    struct{} `cbor:",toarray"`
	Body []byte
	Hash []byte
}

type kind struct {
	Type uint8 `cbor:"1,keyasint"`
}

// Summary is what Check learned.
type Summary struct {
	Frames int
	Head   []byte // the last hash (the session-end event's)
	Bytes  int64
}

// Check verifies the chain in r: every hash, a header first and a trailer
// last, and (when want is not nil) that the last hash equals want. Errors
// wrap ErrBroken and name the frame.
func Check(r io.Reader, want []byte) (*Summary, error) {
	cr := &counter{r: r}
	dec := decMode.NewDecoder(cr)
	var prev [sha256.Size]byte
	s := &Summary{}
	last := uint8(0)
	for i := 0; ; i++ {
		var f frame
		err := dec.Decode(&f)
		if err == io.EOF {
			break
		}
		if err != nil {
			return s, fmt.Errorf("%w: frame %d undecodable (altered or truncated): %v", ErrBroken, i, err)
		}
		if last == 3 {
			return s, fmt.Errorf("%w: frame %d after the trailer", ErrBroken, i)
		}
		h := sha256.New()
		h.Write(prev[:])
		h.Write(f.Body)
		sum := h.Sum(nil)
		if !bytes.Equal(sum, f.Hash) {
			return s, fmt.Errorf("%w: frame %d hash does not match the chain", ErrBroken, i)
		}
		copy(prev[:], sum)
		var k kind
		if err := decMode.Unmarshal(f.Body, &k); err != nil {
			return s, fmt.Errorf("%w: frame %d body undecodable: %v", ErrBroken, i, err)
		}
		if i == 0 && k.Type != 1 {
			return s, fmt.Errorf("%w: first frame is not a header", ErrBroken)
		}
		last = k.Type
		s.Frames = i + 1
		s.Head = sum
	}
	s.Bytes = cr.n
	if s.Frames == 0 {
		return s, fmt.Errorf("%w: empty recording", ErrBroken)
	}
	if last != 3 {
		return s, fmt.Errorf("%w: truncated: no trailer after frame %d", ErrBroken, s.Frames-1)
	}
	if want != nil && !bytes.Equal(s.Head, want) {
		return s, fmt.Errorf("%w: last hash %x is not the session-end event's %x", ErrBroken, s.Head, want)
	}
	return s, nil
}

type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
