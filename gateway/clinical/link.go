package clinical

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/wardgate/wardgate/hal"
)

// serialLink keeps a device's serial port open, reopening it with backoff,
// and hands it to one session at a time.
type serialLink struct {
	d   *device
	cfg hal.SerialConfig

	mu     sync.Mutex
	port   io.ReadWriteCloser // nil while the port is missing
	owner  *conn
	closed bool
}

var errNotOwner = errors.New("serial port no longer owned by this session")

// run opens the port, reads from it, and reopens it after failures until
// ctx is done.
func (l *serialLink) run(ctx context.Context) {
	defer l.d.wg.Done()
	o := l.d.s.o
	backoff := o.SerialBackoffMin
	for ctx.Err() == nil {
		p, err := o.OpenSerial(l.cfg)
		if err != nil {
			l.d.setLink(linkDown, fmt.Sprintf("cannot open serial port %s: %v (check the cable or USB adapter)", l.cfg.Port, err))
			select {
			case <-o.Clock.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, o.SerialBackoffMax)
			continue
		}
		backoff = o.SerialBackoffMin
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = p.Close()
			return
		}
		l.port = p
		l.mu.Unlock()
		l.d.setLink(linkUp, "")
		err = l.read(p)
		l.mu.Lock()
		l.port = nil
		owner := l.owner
		l.owner = nil
		l.mu.Unlock()
		_ = p.Close()
		if owner != nil {
			owner.cut(ReasonLinkDown, false)
		}
		if ctx.Err() != nil {
			return
		}
		l.d.setLink(linkDown, fmt.Sprintf("serial port %s failed: %v (adapter unplugged?); reopening", l.cfg.Port, err))
	}
}

// read copies device output to the owning session, discarding it while no
// session owns the port, until the port fails.
func (l *serialLink) read(p io.Reader) error {
	buf := make([]byte, 4096)
	for {
		n, err := p.Read(buf)
		if n > 0 {
			l.mu.Lock()
			c := l.owner
			l.mu.Unlock()
			if c != nil {
				if _, werr := c.tc.Write(buf[:n]); werr != nil {
					c.cut(ReasonClientError, false)
				} else {
					c.fromDev.Add(int64(n))
					l.d.st.fromDev.Add(int64(n))
				}
			}
		}
		if err != nil {
			return err
		}
	}
}

// attach makes c the port's owner; it returns a refusal reason otherwise.
func (l *serialLink) attach(c *conn) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.port == nil:
		return ReasonLinkDown
	case l.owner != nil:
		return ReasonBusy
	}
	if r, ok := l.port.(interface{ ResetInputBuffer() error }); ok {
		_ = r.ResetInputBuffer()
	}
	l.owner = c
	return ""
}

func (l *serialLink) detach(c *conn) {
	l.mu.Lock()
	if l.owner == c {
		l.owner = nil
	}
	l.mu.Unlock()
}

// write sends p to the port if c still owns it; a failed write closes the
// port so that run reopens it.
func (l *serialLink) write(c *conn, p []byte) (int, error) {
	l.mu.Lock()
	port := l.port
	owns := l.owner == c
	l.mu.Unlock()
	if !owns || port == nil {
		return 0, errNotOwner
	}
	n, err := port.Write(p)
	if err != nil {
		_ = port.Close()
	}
	return n, err
}

// shutdown closes the port (ending run's read) and keeps it closed.
func (l *serialLink) shutdown() {
	l.mu.Lock()
	l.closed = true
	p := l.port
	l.mu.Unlock()
	if p != nil {
		_ = p.Close()
	}
}

type serialWriter struct {
	l *serialLink
	c *conn
}

func (w serialWriter) Write(p []byte) (int, error) { return w.l.write(w.c, p) }
