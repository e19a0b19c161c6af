package siem

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/wire"
)

// Webhook headers. The signature is HMAC-SHA256 with the shared secret
// over "v1:" + timestamp + ":" + body, hex encoded, prefixed "v1=".
const (
	HeaderTimestamp = "X-Wardgate-Timestamp" // unix seconds when the request was signed
	HeaderSignature = "X-Wardgate-Signature" // v1=HEX
	HeaderDelivery  = "X-Wardgate-Delivery"  // stable id of the notification: the same on every retry
	HeaderType      = "X-Wardgate-Type"      // vendor_request, alarm or finding
)

// Webhook notification types.
const (
	TypeVendorRequest = "vendor_request"
	TypeAlarm         = "alarm"
	TypeFinding       = "finding"
)

// DefaultTolerance is how far a webhook timestamp may be from the
// receiver's clock in Verify.
const DefaultTolerance = 5 * time.Minute

// Verification errors.
var (
	ErrBadSignature = errors.New("webhook signature does not match")
	ErrStale        = errors.New("webhook timestamp outside the tolerance")
)

// Notable reports whether a line deserves a webhook and of which type:
// vendor access requests, events of severity alarm, and findings (every
// alert line: verify_failed, gap, topic_mismatch, body_invalid).
func Notable(l wire.Line) (string, bool) {
	if l.Alert != "" {
		return TypeFinding, true
	}
	if l.Kind != "event" {
		return "", false
	}
	body, _ := l.Body.(map[string]any)
	if text(body["kind"]) == "vendor.request" {
		return TypeVendorRequest, true
	}
	if text(body["severity"]) == wire.SeverityAlarm {
		return TypeAlarm, true
	}
	return "", false
}

// Notification is the JSON body of a webhook POST. Text is a one-line
// summary for chat tools (the field name chat incoming webhooks show).
type Notification struct {
	Type     string            `json:"type"`
	ID       string            `json:"id"` // equals the Delivery header
	Text     string            `json:"text"`
	Severity string            `json:"severity"`
	Gateway  string            `json:"gateway"`
	Event    string            `json:"event"`
	ClassID  int               `json:"class_id"`
	Time     string            `json:"time"`
	Attrs    map[string]string `json:"attrs,omitempty"`
	Line     wire.Line         `json:"line"`
}

// Sign returns the signature header value for body signed at ts.
func Sign(secret []byte, ts time.Time, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, strconv.FormatInt(ts.Unix(), 10), body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v1:" + ts + ":"))
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a received webhook: timestamp is the X-Wardgate-Timestamp
// header, signature the X-Wardgate-Signature header, body the raw request
// body. It fails with ErrStale when the timestamp is further than
// tolerance from now (<= 0: DefaultTolerance) and with ErrBadSignature
// when the signature does not match (compared in constant time).
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not unix seconds", ErrStale, timestamp)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s off", ErrStale, d.Round(time.Second))
	}
	hexSig, ok := strings.CutPrefix(signature, "v1=")
	if !ok {
		return fmt.Errorf("%w: no v1= signature", ErrBadSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || !hmac.Equal(got, mac(secret, timestamp, body)) {
		return ErrBadSignature
	}
	return nil
}

// MinSecretLen is the shortest secret LoadSecret accepts.
const MinSecretLen = 16

// LoadSecret reads a webhook secret from a file; surrounding white space
// (a trailing newline) is not part of it.
func LoadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < MinSecretLen {
		return nil, fmt.Errorf("webhook secret %s: %d bytes, need at least %d (for example: openssl rand -hex 32 > %s)", path, len(b), MinSecretLen, path)
	}
	return b, nil
}

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	URL    string // https://...; http:// only to loopback
	Secret []byte // required, at least MinSecretLen bytes
	// Client sends the requests (its Transport carries the TLS settings);
	// nil is a client with a 10 s timeout.
	Client *http.Client
	Queue  *Queue // required; the webhook does not close it
	// MinBackoff and MaxBackoff bound the wait between attempts after a
	// failure (defaults 1 s and 5 min).
	MinBackoff, MaxBackoff time.Duration
	Clock                  clockwork.Clock
	Logger                 *slog.Logger
}

// WebhookStats are a Webhook's counters.
type WebhookStats struct {
	Queued    int    `json:"queued"`
	Dropped   Drops  `json:"dropped"`
	Delivered uint64 `json:"delivered"`
	Rejected  uint64 `json:"rejected"` // answered 4xx (not 408/429): dropped, logged
	Failures  uint64 `json:"failures"` // attempts retried
	LastError string `json:"last_error,omitempty"`
}

// Webhook POSTs signed JSON notifications for notable lines. Send
// queues; Run delivers in order, one at a time, retrying 5xx, 408, 429
// and network errors with a capped backoff. Send is safe for concurrent
// use; Run is called once.
type Webhook struct {
	o                             WebhookOptions
	log                           *slog.Logger
	delivered, rejected, failures atomic.Uint64
	mu                            sync.Mutex
	lastErr                       string
	drops                         dropWatch
	hook                          func(string) // tests: "delivered", "rejected", "failed"
}

// NewWebhook checks o and applies defaults.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	if err := checkWebhookURL(o.URL); err != nil {
		return nil, err
	}
	u, _ := url.Parse(o.URL)
	if len(o.Secret) < MinSecretLen {
		return nil, fmt.Errorf("webhook secret: need at least %d bytes", MinSecretLen)
	}
	if o.Queue == nil {
		return nil, errors.New("siem: webhook needs a queue")
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{o: o, log: o.Logger.With("component", "siem-webhook", "url", u.Redacted())}
	w.drops.check(o.Queue, o.Clock.Now(), w.log.Warn) // the baseline: earlier drops are not news
	return w, nil
}

func checkWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
		return fmt.Errorf("webhook URL %q: use https://HOST/PATH", s)
	}
	return nil
}

func isLoopback(h string) bool { return h == "localhost" || h == "127.0.0.1" || h == "::1" }

// Send queues a notification when l is Notable and ignores other lines.
func (w *Webhook) Send(l wire.Line) error { return w.SendBatch([]wire.Line{l}) }

// SendBatch queues the notifications of the notable lines of ls in one
// transaction.
func (w *Webhook) SendBatch(ls []wire.Line) error {
	var recs []Record
	for _, l := range ls {
		body, ok, err := w.notification(l)
		if err != nil {
			return err
		}
		if ok {
			recs = append(recs, Record{Data: body})
		}
	}
	if len(recs) == 0 {
		return nil
	}
	if err := w.o.Queue.PutBatch(recs); err != nil {
		return err
	}
	w.drops.check(w.o.Queue, w.o.Clock.Now(), w.log.Warn)
	return nil
}

func (w *Webhook) notification(l wire.Line) ([]byte, bool, error) {
	typ, ok := Notable(l)
	if !ok {
		return nil, false, nil
	}
	f := Extract(l, w.o.Clock.Now())
	n := Notification{Type: typ, Text: f.Summary(), Severity: f.Level.String(), Gateway: f.Gateway,
		Event: f.Event, ClassID: ClassOf(f.Event).ID, Time: f.Time.Format(time.RFC3339Nano), Line: l}
	if len(f.Attrs) > 0 {
		n.Attrs = map[string]string{}
		for _, a := range f.Attrs {
			n.Attrs[a.Key] = a.Value
		}
	}
	// The id names the notification, not the attempt: gateway, seq and
	// event for messages; the alert and its details for alert lines.
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d\x00%s\x00%s\x00%d\x00%d\x00%s", f.Gateway, f.Session, f.Seq,
		f.Event, f.Topic, f.GapFrom, f.GapTo, f.Error))
	n.ID = hex.EncodeToString(sum[:16])
	body, err := json.Marshal(n)
	if err != nil {
		return nil, false, fmt.Errorf("siem: webhook body: %w", err)
	}
	return body, true, nil
}

// Stats returns the webhook's counters.
func (w *Webhook) Stats() WebhookStats {
	w.mu.Lock()
	le := w.lastErr
	w.mu.Unlock()
	return WebhookStats{Queued: w.o.Queue.Len(), Dropped: w.o.Queue.Dropped(), Delivered: w.delivered.Load(),
		Rejected: w.rejected.Load(), Failures: w.failures.Load(), LastError: le}
}

func (w *Webhook) note(ev string) {
	if w.hook != nil {
		w.hook(ev)
	}
}

// errPermanent marks an answer that retrying cannot fix.
type errPermanent struct{ error }

// Run delivers queued notifications until ctx is cancelled; it returns
// nil then.
func (w *Webhook) Run(ctx context.Context) error {
	backoff := w.o.MinBackoff
	for ctx.Err() == nil {
		items, err := w.o.Queue.After(0, 1)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-w.o.Queue.Notify():
			}
			continue
		}
		it := items[0]
		err = w.post(ctx, it.Data)
		var perm errPermanent
		switch {
		case err == nil:
			if err := w.o.Queue.Delete(it.ID); err != nil {
				return err
			}
			w.delivered.Add(1)
			backoff = w.o.MinBackoff
			w.note("delivered")
			continue
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &perm):
			w.setErr(err)
			w.log.Error("webhook rejected a notification; dropped", "err", err)
			if err := w.o.Queue.Delete(it.ID); err != nil {
				return err
			}
			w.rejected.Add(1)
			w.note("rejected")
			continue
		}
		w.setErr(err)
		w.failures.Add(1)
		w.log.Warn("webhook delivery failed; will retry", "err", err, "retry_in", backoff, "queued", w.o.Queue.Len())
		w.note("failed")
		wait := w.o.Clock.NewTimer(backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil
		case <-wait.Chan():
		}
		backoff = min(2*backoff, w.o.MaxBackoff)
	}
	return nil
}

func (w *Webhook) setErr(err error) {
	w.mu.Lock()
	w.lastErr = err.Error()
	w.mu.Unlock()
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	var n struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	_ = json.Unmarshal(body, &n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return errPermanent{err}
	}
	now := w.o.Clock.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "wardgate-webhook/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(w.o.Secret, now, body))
	req.Header.Set(HeaderDelivery, n.ID)
	req.Header.Set(HeaderType, n.Type)
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("post: %s", resp.Status)
	}
	return errPermanent{fmt.Errorf("post: %s (check the URL and the shared secret)", resp.Status)}
}
