package access

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// api makes one status API call (method path) to the gateway over mTLS and
// decodes the JSON answer into out (2xx) or returns an *APIError.
func (c *Client) api(ctx context.Context, method, path string, out any) error {
	c.defaults()
	if c.TLS == nil {
		return errors.New("vendor client: no TLS configuration (LoadClientTLS)")
	}
	raw, err := c.Dial(ctx, "tcp", c.Gateway)
	if err != nil {
		return fmt.Errorf("connect to gateway %s: %w", c.Gateway, err)
	}
	defer raw.Close()
	cfg := c.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(c.Gateway)
		cfg.ServerName = host
	}
	tc := tls.Client(raw, cfg)
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS with gateway %s: %w (check --cert, --key and --ca)", c.Gateway, err)
	}
	if _, err := fmt.Fprintf(tc, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, path, c.Gateway); err != nil {
		return fmt.Errorf("gateway status API: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), &http.Request{Method: method})
	if err != nil {
		return fmt.Errorf("gateway status API: read answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("gateway status API: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{}
		if json.Unmarshal(body, ae) != nil || ae.Reason == "" {
			ae.Code, ae.Reason = resp.Header.Get("X-Wardgate-Refusal"), strings.TrimSpace(string(body))
		}
		return ae
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("gateway status API: bad answer: %w", err)
	}
	return nil
}

func (e *APIError) Error() string { return e.Reason }

// Status asks the gateway for the caller's requests, grants and sessions
// (GET /v1/me).
func (c *Client) Status(ctx context.Context) (*VendorStatus, error) {
	var st VendorStatus
	if err := c.api(ctx, "GET", "/v1/me", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Request asks for access to Target without opening a tunnel (POST
// /v1/request): the answer is the active grant, or the request now waiting.
func (c *Client) Request(ctx context.Context) (*RequestAnswer, error) {
	var ans RequestAnswer
	q := url.Values{"target": {c.Target}}
	if c.Reason != "" {
		q.Set("reason", c.Reason)
	}
	if err := c.api(ctx, "POST", "/v1/request?"+q.Encode(), &ans); err != nil {
		return nil, err
	}
	return &ans, nil
}

// wait blocks on Clock for d (or until ctx is done).
func (c *Client) wait(ctx context.Context, d time.Duration) error {
	until := c.Clock.Now().Add(d)
	ch := c.Clock.After(d)
	if c.sleepHook != nil {
		c.sleepHook(until)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-ch:
		return nil
	}
}

// left formats the time from now to t for a countdown.
func left(now, t time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%02d:%02d left", int(d/time.Minute), int(d%time.Minute/time.Second))
}

// awaitApproval polls the gateway until request id is no longer pending,
// printing a countdown to its expiry (the device's request_timeout). It
// returns the request or grant as it ended up.
func (c *Client) awaitApproval(ctx context.Context, g VendorGrant, why string) (VendorGrant, error) {
	fmt.Fprintf(c.Out, "request %s recorded for %s: %s\n", g.ID, g.Device, why)
	for g.State == StatePending {
		now := c.Clock.Now()
		wait := waitLine(g)
		fmt.Fprintf(c.Out, "waiting for approval of %s (%s): %s, until %s\n", g.ID, wait, left(now, g.Expires), g.Expires.UTC().Format(time.RFC3339))
		step := min(c.RetryEvery, max(g.Expires.Sub(now), time.Second))
		if err := c.wait(ctx, step); err != nil {
			return g, err
		}
		st, err := c.Status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return g, ctx.Err()
			}
			if c.Clock.Now().After(g.Expires) {
				return g, fmt.Errorf("request %s expired at %s; the gateway did not answer: %w", g.ID, g.Expires.UTC().Format(time.RFC3339), err)
			}
			fmt.Fprintf(c.Out, "cannot ask the gateway (%v); retrying\n", err)
			continue
		}
		x, ok := st.Find(g.ID)
		if !ok {
			return g, fmt.Errorf("request %s is no longer known to the gateway", g.ID)
		}
		g = x
	}
	return g, nil
}

func waitLine(g VendorGrant) string {
	var parts []string
	for _, k := range g.Waiting {
		switch k {
		case KindLocal:
			parts = append(parts, "local approval: approve button or `wardgate grant approve "+g.ID+"`")
		case KindCentral:
			parts = append(parts, "central approval: a signed approve command")
		}
	}
	if len(parts) == 0 {
		return "approval"
	}
	return strings.Join(parts, " and ")
}

// GrantError is a request that did not become a grant.
type GrantError struct{ Grant VendorGrant }

func (e *GrantError) Error() string {
	g := e.Grant
	switch g.State {
	case StateDenied:
		return fmt.Sprintf("request %s was denied by %s", g.ID, g.ClosedBy)
	case StateExpired:
		if !g.Approved.IsZero() {
			return fmt.Sprintf("grant %s expired at %s", g.ID, g.Expires.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("request %s expired unanswered at %s", g.ID, g.Expires.UTC().Format(time.RFC3339))
	}
	by := ""
	if g.ClosedBy != "" {
		by = " by " + g.ClosedBy
	}
	return fmt.Sprintf("request %s is %s%s", g.ID, g.State, by)
}

// AwaitGrant asks for access to Target (recording a request if there is
// none) and waits, with a countdown, until it is approved, refused or the
// request expires. It prints the grant's id, approver and expiry.
func (c *Client) AwaitGrant(ctx context.Context) (VendorGrant, error) {
	c.defaults()
	ans, err := c.Request(ctx)
	if err != nil {
		return VendorGrant{}, err
	}
	g := ans.Grant
	if ans.Code != "" && g.State != StatePending {
		if g.ID == "" {
			return g, &APIError{Code: ans.Code, Reason: ans.Reason}
		}
		return g, &GrantError{g}
	}
	if g.State == StatePending {
		if g, err = c.awaitApproval(ctx, g, ans.Reason); err != nil {
			return g, err
		}
	}
	if g.State != StateActive {
		return g, &GrantError{g}
	}
	c.printGrant(g)
	return g, nil
}

func (c *Client) printGrant(g VendorGrant) {
	by := strings.Join(g.Approvers, " and ")
	if by == "" {
		by = "the device owner"
	}
	now := c.Clock.Now()
	fmt.Fprintf(c.Out, "grant %s for %s ports %s approved by %s; expires at %s (in %s)\n", g.ID, g.Device, strings.Join(g.Ports, ","), by,
		g.Expires.UTC().Format(time.RFC3339), g.Expires.Sub(now).Round(time.Second))
}

// Watch follows grant id until it ends or ctx is done: it warns at each of
// Warnings before the end, reports extensions, and says why the grant
// ended. It polls the gateway every PollEvery.
func (c *Client) Watch(ctx context.Context, id string, expires time.Time) {
	c.defaults()
	warned := map[time.Duration]bool{}
	for {
		now := c.Clock.Now()
		rem := expires.Sub(now)
		// The smallest threshold reached and not yet warned: one line, even
		// if several were passed at once.
		var due time.Duration = -1
		for _, w := range c.Warnings {
			if rem <= w && !warned[w] {
				warned[w] = true
				if due < 0 || w < due {
					due = w
				}
			}
		}
		if due >= 0 && rem > 0 {
			fmt.Fprintf(c.Out, "warning: grant %s ends in %s (at %s); to ask for more time run: wardgate connect --extend 30m --reason WHY (same --gateway/--target/--cert/--key/--ca)\n",
				id, rem.Round(time.Second), expires.UTC().Format(time.RFC3339))
		}
		next := c.PollEvery
		for _, w := range c.Warnings {
			if !warned[w] && rem > w && rem-w < next {
				next = rem - w
			}
		}
		if rem > 0 && rem < next {
			next = rem
		}
		if err := c.wait(ctx, next); err != nil {
			return
		}
		st, err := c.Status(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		g, ok := st.Find(id)
		if !ok {
			return
		}
		if g.State != StateActive {
			fmt.Fprintf(c.Out, "grant %s ended: %s (%s)\n", id, g.End, g.End.Explain())
			return
		}
		if !g.Expires.Equal(expires) {
			fmt.Fprintf(c.Out, "grant %s extended: now expires at %s (in %s)\n", id, g.Expires.UTC().Format(time.RFC3339), g.Expires.Sub(c.Clock.Now()).Round(time.Second))
			expires = g.Expires
			for w := range warned {
				if expires.Sub(c.Clock.Now()) > w {
					delete(warned, w)
				}
			}
		}
	}
}

// explainEnd asks the gateway why session id ended and prints it.
func (c *Client) explainEnd(ctx context.Context, id string) {
	if id == "" {
		fmt.Fprintf(c.Out, "session to %s ended\n", c.Target)
		return
	}
	// The gateway records the reason before it closes the tunnel; a
	// session the device or the vendor closed may take a moment to end.
	for try := 0; try < 10; try++ {
		st, err := c.Status(ctx)
		if err != nil {
			break
		}
		for _, s := range st.Ended {
			if s.ID == id {
				fmt.Fprintf(c.Out, "session %s to %s ended: %s (%s)\n", id, c.Target, s.EndReason, s.EndReason.Explain())
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprintf(c.Out, "session %s to %s ended\n", id, c.Target)
}

// Extend asks for d more on the active grant that covers Target and waits,
// with a countdown, until the device owner approves or refuses. It returns
// the grant's new expiry.
func (c *Client) Extend(ctx context.Context, d time.Duration) (time.Time, error) {
	c.defaults()
	host, port, err := splitTarget(c.Target)
	if err != nil {
		return time.Time{}, fmt.Errorf("--target %q: write DEVICE:PORT or DEVICE:console", c.Target)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var gid string
	for _, g := range st.Grants {
		if g.Device == host && g.Extends == "" && containsStr(g.Ports, PortName(port)) {
			gid = g.ID
		}
	}
	if gid == "" {
		return time.Time{}, fmt.Errorf("you have no active grant for %s: connect first (an extension only lengthens a grant)", c.Target)
	}
	q := url.Values{"grant": {gid}, "for": {d.String()}}
	if c.Reason != "" {
		q.Set("reason", c.Reason)
	}
	var ans RequestAnswer
	if err := c.api(ctx, "POST", "/v1/extend?"+q.Encode(), &ans); err != nil {
		return time.Time{}, err
	}
	x, err := c.awaitApproval(ctx, ans.Grant, fmt.Sprintf("%s more on grant %s, %s", d, gid, ans.Reason))
	if err != nil {
		return time.Time{}, err
	}
	if x.State != StateApplied {
		return time.Time{}, &GrantError{x}
	}
	fmt.Fprintf(c.Out, "extension %s approved by %s: grant %s now expires at %s\n", x.ID, strings.Join(x.Approvers, " and "), gid, x.Expires.UTC().Format(time.RFC3339))
	return x.Expires, nil
}

func containsStr(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// ServeStdio waits for the grant, then carries one tunnel between in and
// out (for ssh -o ProxyCommand). Progress goes to Out, never to out.
func (c *Client) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	c.defaults()
	g, err := c.AwaitGrant(ctx)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go c.Watch(wctx, g.ID, g.Expires)
	c.relay(ctx, in, out)
	return nil
}
