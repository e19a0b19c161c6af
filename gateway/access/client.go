package access

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// Client is the vendor side of the channel (`wardgate connect`): it opens
// CONNECT tunnels over mTLS to a gateway and relays local connections
// through them.
type Client struct {
	Gateway string      // HOST:PORT of the gateway's vendor listener
	Target  string      // DEVICE:PORT
	TLS     *tls.Config // client certificate and the CA to verify the gateway with
	Reason  string      // sent as the X-Reason header of every CONNECT (optional)

	Dial       func(ctx context.Context, network, addr string) (net.Conn, error) // default net.Dialer
	Clock      clockwork.Clock                                                   // default real clock
	RetryEvery time.Duration                                                     // while waiting for approval (default 5s)
	MaxWait    time.Duration                                                     // give up waiting after (default 15m)
	Out        io.Writer                                                         // progress lines for the user (default io.Discard)
	Logger     *slog.Logger
}

// LoadClientTLS builds the vendor's TLS configuration from PEM files: the
// personal certificate (with its intermediates), its key, and the hospital's
// root certificate(s) that the gateway's certificate must chain to.
func LoadClientTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load vendor certificate %s and key %s: %w", certFile, keyFile, err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate: pass the hospital's root certificate with --ca", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// RefusedError is a refused CONNECT.
type RefusedError struct {
	Status  int
	Code    string // X-Wardgate-Refusal (see the Code* constants)
	Reason  string // one line
	Request string // request/grant id, if any
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("gateway refused (%d %s): %s", e.Status, e.Code, e.Reason)
}

// Waiting reports whether approval may still come (the client retries).
func (e *RefusedError) Waiting() bool {
	return e.Code == CodeNoGrant || e.Code == CodePending || e.Code == CodeExpired
}

func (c *Client) defaults() {
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	if c.RetryEvery <= 0 {
		c.RetryEvery = 5 * time.Second
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 15 * time.Minute
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// DialTunnel opens one tunnel to Target. A refusal is a *RefusedError.
func (c *Client) DialTunnel(ctx context.Context) (net.Conn, error) {
	c.defaults()
	if c.TLS == nil {
		return nil, errors.New("vendor client: no TLS configuration (LoadClientTLS)")
	}
	raw, err := c.Dial(ctx, "tcp", c.Gateway)
	if err != nil {
		return nil, fmt.Errorf("connect to gateway %s: %w", c.Gateway, err)
	}
	cfg := c.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(c.Gateway)
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("TLS with gateway %s: %w (check --cert, --key and --ca)", c.Gateway, err)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", c.Target, c.Target)
	if r := oneLine(c.Reason); r != "" {
		fmt.Fprintf(&sb, "X-Reason: %s\r\n", r)
	}
	sb.WriteString("\r\n")
	if _, err := io.WriteString(tc, sb.String()); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("send CONNECT: %w", err)
	}
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		_ = raw.Close()
		// A refusal during the handshake (TLS 1.3 reports it here).
		return nil, fmt.Errorf("read gateway answer: %w (the gateway may have refused the client certificate)", err)
	}
	if resp.StatusCode == http.StatusOK {
		return &tunnelConn{Conn: tc, r: br}, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_ = raw.Close()
	reason := strings.TrimSpace(string(body))
	if reason == "" {
		reason = resp.Status
	}
	return nil, &RefusedError{Status: resp.StatusCode, Code: resp.Header.Get("X-Wardgate-Refusal"), Reason: reason, Request: resp.Header.Get("X-Wardgate-Request")}
}

type tunnelConn struct {
	net.Conn
	r *bufio.Reader
}

func (t *tunnelConn) Read(p []byte) (int, error) { return t.r.Read(p) }

// DialWait is DialTunnel that keeps retrying every RetryEvery (printing
// progress to Out) while the gateway says approval is pending, up to MaxWait.
func (c *Client) DialWait(ctx context.Context) (net.Conn, error) {
	c.defaults()
	start := c.Clock.Now()
	last := ""
	for attempt := 1; ; attempt++ {
		conn, err := c.DialTunnel(ctx)
		var re *RefusedError
		if err == nil || !errors.As(err, &re) || !re.Waiting() {
			if re != nil {
				fmt.Fprintf(c.Out, "refused: %s\n", re.Reason)
			}
			return conn, err
		}
		waited := c.Clock.Since(start)
		if waited >= c.MaxWait {
			fmt.Fprintf(c.Out, "gave up after %s: %s\n", waited.Round(time.Second), re.Reason)
			return nil, err
		}
		if re.Reason != last {
			fmt.Fprintf(c.Out, "%s\n", re.Reason)
			last = re.Reason
		} else {
			fmt.Fprintf(c.Out, "still waiting for approval of %s (%s, attempt %d)\n", re.Request, waited.Round(time.Second), attempt)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.Clock.After(c.RetryEvery):
		}
	}
}

// Serve accepts local connections on ln and tunnels each through the gateway
// until ctx is done; it returns after every relay ended.
func (c *Client) Serve(ctx context.Context, ln net.Listener) error {
	c.defaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		_ = ln.Close()
	}()
	var err error
	for {
		var lc net.Conn
		lc, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				err = nil
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serveOne(ctx, lc)
		}()
	}
	cancel()
	wg.Wait()
	return err
}

func (c *Client) serveOne(ctx context.Context, lc net.Conn) {
	defer lc.Close()
	tc, err := c.DialWait(ctx)
	if err != nil {
		var re *RefusedError
		if !errors.As(err, &re) {
			fmt.Fprintf(c.Out, "error: %v\n", err)
		}
		return
	}
	defer tc.Close()
	fmt.Fprintf(c.Out, "connected to %s through %s\n", c.Target, c.Gateway)
	stop := context.AfterFunc(ctx, func() { _ = tc.Close(); _ = lc.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(tc, lc)
		if cw, ok := tc.(*tunnelConn).Conn.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	_, _ = io.Copy(lc, tc)
	fmt.Fprintf(c.Out, "session to %s ended\n", c.Target)
	_ = lc.Close()
	_ = tc.Close()
	<-done
}
