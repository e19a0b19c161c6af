package upload

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

type netConn = net.Conn

// piece is the most a limited read returns at once.
const piece = 16 << 10

// limiter paces bytes to a rate (a virtual schedule: each grant moves the
// next free time by n/rate; bursts up to one piece). Safe for concurrent
// use; a nil rate or 0 does not limit.
type limiter struct {
	rate  int64
	clock clockwork.Clock
	mu    sync.Mutex
	next  time.Time
}

func newLimiter(rate int64, clock clockwork.Clock) *limiter {
	return &limiter{rate: rate, clock: clock}
}

// wait blocks until n more bytes may go, or ctx ends.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	now := l.clock.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(time.Duration(int64(n) * int64(time.Second) / l.rate))
	l.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		select {
		case <-l.clock.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

type limitedReader struct {
	r     io.Reader
	lim   *limiter
	ctx   context.Context
	count func(int)
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > piece {
		p = p[:piece]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.lim.wait(l.ctx, n); werr != nil {
			return 0, werr
		}
		l.count(n)
	}
	return n, err
}
