package front

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
)

// Refusal reasons reported to Options.OnRefused (stable codes, documented in
// docs/events.md).
const (
	ReasonPendingLimit = "pending_limit" // MaxPending handshakes already in progress
	ReasonSourceLimit  = "source_limit"  // MaxPerSource connections from this address
	ReasonConnLimit    = "conn_limit"    // MaxConns sessions established (Conn.Establish)
	ReasonRateLimit    = "rate_limit"    // more than HandshakeRate new connections per second
	ReasonShutdown     = "shutdown"      // the front stopped accepting
)

// DefaultLimits apply to zero fields of Options.Limits.
var DefaultLimits = Limits{MaxConns: 64, MaxPending: 256, MaxPerSource: 16, HandshakeTimeout: 10 * time.Second}

// Limits cap one front. Zero fields take DefaultLimits (or the defaults
// given to WithDefaults); negative means unlimited.
type Limits struct {
	MaxConns         int           // established sessions
	MaxPending       int           // handshakes in progress
	MaxPerSource     int           // connections (handshaking or established) per source address
	HandshakeTimeout time.Duration // TLS handshake and, for the vendor side, the request head
	// HandshakeRate caps new connections per second (with a burst of the
	// same size), so a flood of handshakes cannot take the CPU the other
	// listeners need: each handshake costs a key exchange and a signature.
	// Connections over the rate are closed before any TLS work. 0 means
	// unlimited (no default).
	HandshakeRate int
}

// WithDefaults fills zero fields of l from def.
func (l Limits) WithDefaults(def Limits) Limits {
	if l.MaxConns == 0 {
		l.MaxConns = def.MaxConns
	}
	if l.MaxPending == 0 {
		l.MaxPending = def.MaxPending
	}
	if l.MaxPerSource == 0 {
		l.MaxPerSource = def.MaxPerSource
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = def.HandshakeTimeout
	}
	if l.HandshakeRate == 0 {
		l.HandshakeRate = def.HandshakeRate
	}
	return l
}

// Total is the most connections the front holds at once (for descriptor
// budgets); -1 when unlimited.
func (l Limits) Total() int {
	if l.MaxConns < 0 || l.MaxPending < 0 {
		return -1
	}
	return l.MaxConns + l.MaxPending
}

// Options configure a Front.
type Options struct {
	Limits Limits
	// Clock times the accept backoff; default the real clock. Handshake
	// deadlines are socket deadlines and use the wall clock.
	Clock clockwork.Clock
	// Logger; default discards.
	Logger *slog.Logger
	// OnRefused is told of every connection refused by a cap, with the
	// source address (no port) and a Reason* code. It must not block; use
	// a Folder to bound what it reports.
	OnRefused func(source, reason string)
	// OnAcceptError is told of every failed Accept and the pause before the
	// next try. It must not block.
	OnAcceptError func(err error, retryIn time.Duration)
}

// Front accepts connections from one listener under Limits. Create it with
// New; Serve runs it.
type Front struct {
	ln net.Listener
	o  Options

	mu        sync.Mutex
	pending   int
	live      int
	perSource map[string]int
	tokens    float64   // handshake rate bucket
	refill    time.Time // last refill of tokens
	closed    bool
	handlers  sync.WaitGroup
	closeOnce sync.Once
}

// New wraps ln. The Front owns ln from now on and closes it in Close.
func New(ln net.Listener, o Options) *Front {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Limits = o.Limits.WithDefaults(DefaultLimits)
	return &Front{ln: ln, o: o, perSource: map[string]int{}}
}

// Addr is the listener's address.
func (f *Front) Addr() net.Addr { return f.ln.Addr() }

// Close stops accepting (Serve's loop ends); connections being handled go
// on. Idempotent.
func (f *Front) Close() error {
	var err error
	f.closeOnce.Do(func() {
		f.mu.Lock()
		f.closed = true
		f.mu.Unlock()
		err = f.ln.Close()
	})
	return err
}

// Conn is one admitted connection, handshaking until Establish.
type Conn struct {
	net.Conn
	// Source is the peer's address without port.
	Source string

	f    *Front
	live bool
}

// Establish moves c from handshaking to established. It returns false (and
// reports ReasonConnLimit) when MaxConns sessions are already established or
// the front stopped; the caller then refuses and closes c.
func (c *Conn) Establish() bool {
	f := c.f
	f.mu.Lock()
	if c.live {
		f.mu.Unlock()
		return true
	}
	if f.o.Limits.MaxConns >= 0 && f.live >= f.o.Limits.MaxConns {
		f.mu.Unlock()
		f.refused(c.Source, ReasonConnLimit)
		return false
	}
	f.pending--
	f.live++
	c.live = true
	f.mu.Unlock()
	_ = c.SetDeadline(time.Time{})
	return true
}

// Counts returns the connections handshaking and established now.
func (f *Front) Counts() (pending, live int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending, f.live
}

func (f *Front) release(c *Conn) {
	f.mu.Lock()
	if c.live {
		f.live--
	} else {
		f.pending--
	}
	if f.perSource[c.Source]--; f.perSource[c.Source] <= 0 {
		delete(f.perSource, c.Source)
	}
	f.mu.Unlock()
}

func (f *Front) refused(source, reason string) {
	if f.o.OnRefused != nil {
		f.o.OnRefused(source, reason)
	}
}

// Temporary tells accept errors that pass when resources free up.
func Temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EPROTO} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Serve accepts until the listener is closed (Close, or ctx done), runs
// handle for each admitted connection in its own goroutine with the
// handshake deadline set, closes the connection and frees its slot when
// handle returns, and returns after every handler returned. Accept errors
// never end it (see the package doc). It returns nil.
func (f *Front) Serve(ctx context.Context, handle func(*Conn)) error {
	stop := context.AfterFunc(ctx, func() { _ = f.Close() })
	defer stop()
	defer f.handlers.Wait()
	var delay time.Duration
	for {
		raw, err := f.ln.Accept()
		if err != nil {
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if closed || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			switch {
			case !Temporary(err):
				delay = time.Second
			case delay == 0:
				delay = 5 * time.Millisecond
			default:
				delay = min(2*delay, time.Second)
			}
			if f.o.OnAcceptError != nil {
				f.o.OnAcceptError(err, delay)
			}
			select {
			case <-f.o.Clock.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		src := hostOf(raw.RemoteAddr())
		lim := f.o.Limits
		reason := ""
		var pause time.Duration
		f.mu.Lock()
		switch {
		case f.closed:
			reason = ReasonShutdown
		case lim.MaxPending >= 0 && f.pending >= lim.MaxPending:
			reason = ReasonPendingLimit
		case lim.MaxPerSource >= 0 && f.perSource[src] >= lim.MaxPerSource:
			reason = ReasonSourceLimit
		case !f.takeTokenLocked(lim.HandshakeRate):
			reason = ReasonRateLimit
			// Over the rate, stop accepting until the next token: excess
			// connections then wait in (or overflow) the kernel's backlog
			// instead of costing an accept and a close each, CPU the
			// other listeners need during a flood.
			pause = time.Duration((1 - f.tokens) / float64(lim.HandshakeRate) * float64(time.Second))
		default:
			f.pending++
			f.perSource[src]++
			f.handlers.Add(1)
		}
		f.mu.Unlock()
		if reason != "" {
			_ = raw.Close()
			if reason != ReasonShutdown {
				f.refused(src, reason)
			}
			if pause > 0 {
				select {
				case <-f.o.Clock.After(min(max(pause, time.Millisecond), time.Second)):
				case <-ctx.Done():
					return nil
				}
			}
			continue
		}
		if lim.HandshakeTimeout > 0 {
			_ = raw.SetDeadline(time.Now().Add(lim.HandshakeTimeout))
		}
		c := &Conn{Conn: raw, Source: src, f: f}
		go func() {
			defer f.handlers.Done()
			defer f.release(c)
			defer c.Close()
			handle(c)
		}()
	}
}

// takeTokenLocked spends one handshake token; false when the rate is
// exhausted. rate <= 0 is unlimited.
func (f *Front) takeTokenLocked(rate int) bool {
	if rate <= 0 {
		return true
	}
	now := f.o.Clock.Now()
	if f.refill.IsZero() {
		f.tokens, f.refill = float64(rate), now
	}
	f.tokens = min(float64(rate), f.tokens+now.Sub(f.refill).Seconds()*float64(rate))
	f.refill = now
	if f.tokens < 1 {
		return false
	}
	f.tokens--
	return true
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// Budget sizes the vendor side against the process's descriptor limit.
type Budget struct {
	Limit    int // RLIMIT_NOFILE (soft)
	Base     int // descriptors the process needs besides listeners' connections
	Clinical int // descriptors the clinical side may need at most
	PerConn  int // descriptors one vendor connection may hold
}

// DefaultBase covers files, bbolt databases, the broker connection, the
// admin socket, listeners and logs, with headroom.
const DefaultBase = 64

// ProcessBudget reads the soft descriptor limit of this process.
func ProcessBudget(clinical int) (Budget, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return Budget{}, fmt.Errorf("read descriptor limit: %w", err)
	}
	lim := r.Cur
	if lim > 1<<20 {
		lim = 1 << 20
	}
	return Budget{Limit: int(lim), Base: DefaultBase, Clinical: clinical, PerConn: 3}, nil
}

// VendorConns is how many vendor connections (handshaking and
// established) fit: what is left of Limit after Base and Clinical, divided
// by PerConn. It is never negative.
func (b Budget) VendorConns() int {
	per := max(b.PerConn, 1)
	return max(b.Limit-b.Base-b.Clinical, 0) / per
}

// Fit shrinks l so that Total fits in n connections: MaxPending first keeps
// at least a quarter of n, MaxConns the rest. It returns l unchanged when it
// already fits, and whether it shrank.
func (l Limits) Fit(n int) (Limits, bool) {
	if t := l.Total(); t >= 0 && t <= n {
		return l, false
	}
	pend := max(n/4, 1)
	if l.MaxPending >= 0 && l.MaxPending < pend {
		pend = l.MaxPending
	}
	conns := max(n-pend, 0)
	if l.MaxConns >= 0 && l.MaxConns < conns {
		conns = l.MaxConns
	}
	l.MaxPending, l.MaxConns = pend, conns
	if l.MaxPerSource < 0 || l.MaxPerSource > n {
		l.MaxPerSource = max(n, 1)
	}
	return l, true
}
