package clinical

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// errWouldBlock is returned by a nonblocking read with nothing to read. It is
// a temporary net.Error, which crypto/tls does not treat as fatal: the
// partial record stays buffered for the next Read.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// nbConn is the client's TCP connection under tls.Conn. Once nonblock is
// set (by the relay's client reader, after the handshake, only ever from
// that goroutine) Read does one nonblocking read and returns errWouldBlock
// when nothing is there, so the relay can wait for readiness without holding
// a buffer.
type nbConn struct {
	net.Conn
	rc       syscall.RawConn // nil: the connection has no descriptor
	owner    *conn
	nonblock bool
}

func newNBConn(c net.Conn) *nbConn {
	n := &nbConn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			n.rc = rc
		}
	}
	return n
}

func (c *nbConn) Read(p []byte) (int, error) {
	if !c.nonblock || c.rc == nil {
		return c.Conn.Read(p)
	}
	return rawRead(c.rc, p)
}

// rawRead does one nonblocking read on rc.
func rawRead(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var err error
	if rerr := rc.Read(func(fd uintptr) bool {
		for {
			n, err = syscall.Read(int(fd), p)
			if err != syscall.EINTR {
				return true
			}
		}
	}); rerr != nil {
		return 0, rerr
	}
	switch {
	case err == syscall.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable blocks until rc is readable (data, EOF or an error waiting),
// its deadline passes or it is closed. RawConn.Read clears the poller's
// readiness before calling the function, so the function must look at the
// socket itself: bytes that arrived after the caller's last nonblocking read
// would otherwise never wake it (the poller is edge-triggered).
func waitReadable(rc syscall.RawConn) error {
	var peek [1]byte
	return rc.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // nothing yet: wait for the poller
			}
			return true // data, EOF or an error: the next read reports it
		}
	})
}

// closeWriter is a connection that can half-close.
type closeWriter interface{ CloseWrite() error }

// readTLS copies from the client's TLS connection to w until EOF or error,
// counting into n and d. It takes a buffer only when bytes are ready.
// It returns nil at EOF (close_notify or a clean FIN).
func readTLS(src io.Reader, nb *nbConn, w io.Writer, n, d *atomic.Int64) error {
	if nb.rc == nil {
		return copyBuf(src, w, n, d)
	}
	nb.nonblock = true
	defer func() { nb.nonblock = false }()
	for {
		b := getBuf()
		fill := 0
		for {
			// Gather what is ready (up to the buffer) into one write.
			k, err := src.Read((*b)[fill:])
			fill += k
			if err == nil && fill < len(*b) {
				continue
			}
			if fill > 0 {
				if _, werr := w.Write((*b)[:fill]); werr != nil {
					putBuf(b)
					return &sideError{device: true, err: werr}
				}
				n.Add(int64(fill))
				d.Add(int64(fill))
				fill = 0
			}
			if err == nil {
				continue
			}
			if err == errWouldBlock {
				break
			}
			putBuf(b)
			if err == io.EOF {
				return nil
			}
			return err
		}
		putBuf(b)
		if err := waitReadable(nb.rc); err != nil {
			return err
		}
	}
}

// readDevice copies from a TCP device connection to w until EOF or error.
// It takes a buffer only when bytes are ready. Errors writing to w are
// wrapped in a clientError.
func readDevice(src net.Conn, w io.Writer, n, d *atomic.Int64) error {
	sc, ok := src.(syscall.Conn)
	var rc syscall.RawConn
	if ok {
		rc, _ = sc.SyscallConn()
	}
	if rc == nil {
		return copyBuf(src, &sideWriter{w}, n, d)
	}
	for {
		var b *[]byte
		var k int
		var err error
		rerr := rc.Read(func(fd uintptr) bool {
			if b == nil {
				b = getBuf()
			}
			for {
				k, err = syscall.Read(int(fd), *b)
				if err != syscall.EINTR {
					break
				}
			}
			if err == syscall.EAGAIN {
				putBuf(b)
				b = nil
				return false
			}
			return true
		})
		if rerr != nil {
			if b != nil {
				putBuf(b)
			}
			return rerr
		}
		if err != nil {
			putBuf(b)
			return os.NewSyscallError("read", err)
		}
		if k == 0 {
			putBuf(b)
			return nil
		}
		_, werr := w.Write((*b)[:k])
		putBuf(b)
		if werr != nil {
			return &sideError{err: werr}
		}
		n.Add(int64(k))
		d.Add(int64(k))
	}
}

// copyBuf is the plain copy for connections without a descriptor (a
// supplied listener's or Dial's wrapped connections). It holds a buffer
// while blocked. Write errors are returned as they come.
func copyBuf(src io.Reader, w io.Writer, n, d *atomic.Int64) error {
	b := getBuf()
	defer putBuf(b)
	for {
		k, err := src.Read(*b)
		if k > 0 {
			if _, werr := w.Write((*b)[:k]); werr != nil {
				var se *sideError
				if errors.As(werr, &se) {
					return se
				}
				return &sideError{device: true, err: werr}
			}
			n.Add(int64(k))
			d.Add(int64(k))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// sideError is a failure writing to the other side: device true means the
// device link failed, false the client.
type sideError struct {
	device bool
	err    error
}

func (e *sideError) Error() string { return e.err.Error() }
func (e *sideError) Unwrap() error { return e.err }

// sideWriter marks write errors as client-side for copyBuf.
type sideWriter struct{ w io.Writer }

func (s *sideWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		return n, &sideError{err: err}
	}
	return n, nil
}
