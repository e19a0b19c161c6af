package clinical

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"
)

// stream is a deterministic pseudo-random byte stream (AES-CTR keystream),
// generated on the fly.
type stream struct {
	ctr  cipher.Stream
	left int64
}

func newStream(n int64) *stream {
	b, _ := aes.NewCipher(make([]byte, 16))
	return &stream{ctr: cipher.NewCTR(b, make([]byte, 16)), left: n}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	clear(p)
	s.ctr.XORKeyStream(p, p)
	s.left -= int64(len(p))
	return len(p), nil
}

// TestLargeTransferSHA256: 256 MiB through the relay to an echo device and
// back keeps its SHA-256, both ways at once.
func TestLargeTransferSHA256(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 16 << 20
	}
	e := newEnv(t, echo, nil)
	c := dial(t, e.addr(), e.p.good(t))
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	var wg sync.WaitGroup
	wg.Add(1)
	sent := sha256.New()
	var werr error
	go func() {
		defer wg.Done()
		_, werr = io.CopyBuffer(io.MultiWriter(c, sent), newStream(size), make([]byte, 64<<10))
		if werr == nil {
			werr = c.CloseWrite()
		}
	}()
	got := sha256.New()
	n, err := io.CopyBuffer(got, c, make([]byte, 64<<10))
	wg.Wait()
	if werr != nil || err != nil {
		t.Fatalf("write: %v, read: %v", werr, err)
	}
	if n != size {
		t.Fatalf("got %d bytes back, want %d", n, size)
	}
	if string(got.Sum(nil)) != string(sent.Sum(nil)) {
		t.Fatal("SHA-256 differs")
	}
	ev := e.ev.wait(t, EvSessionEnd, nil)
	if ev.ToDevice != size || ev.FromDevice != size {
		t.Fatalf("counted %d/%d", ev.ToDevice, ev.FromDevice)
	}
	runtime.GC()
}
