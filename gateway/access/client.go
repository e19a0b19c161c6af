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

	// Warnings are how long before the grant's end Watch warns (default
	// 10m, 5m and 1m); PollEvery is how often it asks the gateway whether
	// the grant changed (default 30s).
	Warnings  []time.Duration
	PollEvery time.Duration

	sleepHook func(until time.Time) // tests: called before waiting on Clock
}

// LoadClientTLS builds the vendor's TLS configuration from PEM files: the
// personal certificate (with its intermediates), its key, and the hospital's
// root certificate(s) that the gateway's certificate must chain to. The
// certificate and key are read again at every handshake (a renewed
// certificate is picked up without a restart).
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
	// The files are read again at every handshake, so that a certificate
	// renewed while connect runs (step ca renew --daemon) is used at once;
	// if they cannot be read, the last good pair is used.
	var mu sync.Mutex
	last := cert
	get := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
			last = c
		}
		c := last
		return &c, nil
	}
	return &tls.Config{GetClientCertificate: get, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
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
	if c.Warnings == nil {
		c.Warnings = []time.Duration{10 * time.Minute, 5 * time.Minute, time.Minute}
	}
	if c.PollEvery <= 0 {
		c.PollEvery = 30 * time.Second
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
		t := &tunnelConn{Conn: tc, r: br, session: resp.Header.Get("X-Wardgate-Session"), grant: resp.Header.Get("X-Wardgate-Grant"),
			injected: resp.Header.Get("X-Wardgate-Injected")}
		t.expires, _ = time.Parse(time.RFC3339, resp.Header.Get("X-Wardgate-Grant-Expires"))
		return t, nil
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
	r        *bufio.Reader
	session  string
	grant    string
	injected string
	expires  time.Time
}

// TunnelInfo describes a tunnel opened by DialTunnel.
type TunnelInfo struct {
	Session  string    // X-Wardgate-Session
	Grant    string    // X-Wardgate-Grant
	Expires  time.Time // X-Wardgate-Grant-Expires
	Injected string    // the service account the gateway logged in to, if any
}

// InfoOf returns what the gateway said about tunnel c (zero for other
// connections).
func InfoOf(c net.Conn) TunnelInfo {
	t, ok := c.(*tunnelConn)
	if !ok {
		return TunnelInfo{}
	}
	return TunnelInfo{Session: t.session, Grant: t.grant, Expires: t.expires, Injected: t.injected}
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
	c.relay(ctx, lc, lc)
}

// relay tunnels one local stream (r, w) through the gateway and, when it
// ends, says why.
func (c *Client) relay(ctx context.Context, r io.Reader, w io.Writer) {
	tc, err := c.DialWait(ctx)
	if err != nil {
		var re *RefusedError
		if !errors.As(err, &re) {
			fmt.Fprintf(c.Out, "error: %v\n", err)
		}
		return
	}
	defer tc.Close()
	info := InfoOf(tc)
	fmt.Fprintf(c.Out, "connected to %s through %s (session %s, grant %s until %s)\n", c.Target, c.Gateway, info.Session, info.Grant, info.Expires.UTC().Format(time.RFC3339))
	if info.Injected != "" {
		fmt.Fprintf(c.Out, "the gateway logged in to service account %s for you\n", info.Injected)
	}
	stop := context.AfterFunc(ctx, func() { _ = tc.Close(); closeIf(r); closeIf(w) })
	defer stop()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(tc, r)
		if cw, ok := tc.(*tunnelConn).Conn.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	_, _ = io.Copy(w, tc)
	_ = tc.Close()
	if ctx.Err() == nil {
		c.explainEnd(ctx, info.Session)
	}
	closeIf(w)
	closeIf(r)
	if _, ok := r.(net.Conn); ok {
		<-done // a local connection's read ends when it is closed (stdin may not)
	}
}

func closeIf(x any) {
	if c, ok := x.(io.Closer); ok {
		_ = c.Close()
	}
}
