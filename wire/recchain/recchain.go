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

// lenientMode reads a frame body's type in Check; other fields, known or
// not, are not looked at.
var lenientMode = func() cbor.DecMode {
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

// chain reads the frames of a recording, checking each hash against the
// chain: the walk that Verify and Check share.
type chain struct {
	dec  *cbor.Decoder
	prev [sha256.Size]byte
	i    int
}

func newChain(r io.Reader) *chain { return &chain{dec: strictMode.NewDecoder(r)} }

// next returns the next frame's body and hash: io.EOF at the end of the
// input, a *ChainError for a frame that is undecodable (altered or
// truncated) or whose hash does not continue the chain.
func (c *chain) next() (body, sum []byte, err error) {
	var f frame
	if err := c.dec.Decode(&f); err == io.EOF {
		return nil, nil, io.EOF
	} else if err != nil {
		return nil, nil, &ChainError{Frame: c.i, Reason: fmt.Sprintf("undecodable frame (recording altered, damaged or truncated): %v", err)}
	}
	h := sha256.New()
	h.Write(c.prev[:])
	h.Write(f.Body)
	sum = h.Sum(nil)
	if !bytes.Equal(sum, f.Hash) {
		return nil, nil, &ChainError{Frame: c.i, Reason: "hash does not match the chain (recording altered or damaged)"}
	}
	copy(c.prev[:], sum)
	c.i++
	return f.Body, sum, nil
}

// Summary is what Check learned.
type Summary struct {
	Frames int
	Head   []byte // the last hash (the session-end event's)
	Bytes  int64
}

// Check verifies the chain in r: every hash, a header first and a trailer
// last, and (when want is not nil) that the last hash equals want. Unlike
// Verify it reads only each body's type, so that central accepts the
// recordings of gateways newer than itself. Errors wrap ErrBroken and name
// the frame.
func Check(r io.Reader, want []byte) (*Summary, error) {
	s, err := check(r, want)
	if ce := (*ChainError)(nil); errors.As(err, &ce) {
		// Central's findings say what happened first: the chain is broken.
		err = fmt.Errorf("%w: %w", ErrBroken, err)
	}
	return s, err
}

func check(r io.Reader, want []byte) (*Summary, error) {
	cr := &counter{r: r}
	c := newChain(cr)
	s := &Summary{}
	last := uint8(0)
	for i := 0; ; i++ {
		body, sum, err := c.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return s, err
		}
		if last == TypeTrailer {
			return s, &ChainError{Frame: i, Reason: "data after the trailer"}
		}
		var k kind
		if err := lenientMode.Unmarshal(body, &k); err != nil {
			return s, &ChainError{Frame: i, Reason: fmt.Sprintf("undecodable frame body: %v", err)}
		}
		if i == 0 && k.Type != TypeHeader {
			return s, &ChainError{Frame: 0, Reason: "first frame is not a header"}
		}
		last = k.Type
		s.Frames = i + 1
		s.Head = sum
	}
	s.Bytes = cr.n
	if s.Frames == 0 {
		return s, &ChainError{Frame: 0, Reason: "empty recording: no header frame"}
	}
	if last != TypeTrailer {
		return s, &ChainError{Frame: s.Frames, Reason: "recording truncated: no trailer"}
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
