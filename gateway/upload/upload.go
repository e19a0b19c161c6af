package upload

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/internal/atomicfile"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/receipt"
)

// Sentinel errors (match with errors.Is).
var (
	// ErrRefused: central refused the recording (its chain does not end in
	// the session-end event's hash: altered or truncated). It is kept and
	// an alarm is due.
	ErrRefused = errors.New("central refused the recording")
	// ErrNotYet: central has not received the session-end event yet.
	ErrNotYet = errors.New("central does not know the session yet")
)

// Defaults.
const (
	DefaultChunk    = 1 << 20
	DefaultInterval = time.Minute
)

// Options configure an Uploader.
type Options struct {
	// URL is central's base URL (https://HOST:PORT); required.
	URL string
	// GatewayID names this gateway in the upload path; required.
	GatewayID string
	// TLSConfig returns the client TLS configuration (the gateway's
	// rotating certificate, central verified against the trust bundle);
	// required.
	TLSConfig func() *tls.Config
	// VerifyReceipt checks the receipt signer's chain and returns its
	// identity (must be central's service identity); required.
	VerifyReceipt envelope.ChainVerifier
	// MaxRate bounds the upload in bytes per second; 0: unbounded.
	MaxRate int64
	// Chunk is the bytes per PUT (default DefaultChunk).
	Chunk int64
	// ReceiptDir keeps the receipts (STATE_DIR/receipts); required.
	ReceiptDir string
	// Store lists the ended recordings (Run only).
	Store *recording.Store
	// Delivered reports whether the session-end event with that seq
	// reached central (Run only; nil: every one).
	Delivered func(seq uint64) (bool, error)
	// Interval between rounds of Run (default DefaultInterval).
	Interval time.Duration
	// OnRefused is called when central refuses a recording.
	OnRefused func(session string, err error)
	Clock     clockwork.Clock // default: real clock
	Logger    *slog.Logger    // default: discard
}

// Uploader uploads recordings. Create it with New.
type Uploader struct {
	o      Options
	log    *slog.Logger
	clock  clockwork.Clock
	client *http.Client
	lim    *limiter
	base   *url.URL

	mu      sync.Mutex
	sent    int64 // bytes sent since New
	refused map[string]bool
}

// New checks o.
func New(o Options) (*Uploader, error) {
	var errs []error
	u, err := url.Parse(o.URL)
	if o.URL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("upload: url %q must be https://HOST:PORT", o.URL))
	}
	if o.GatewayID == "" || o.TLSConfig == nil || o.VerifyReceipt == nil || o.ReceiptDir == "" {
		errs = append(errs, errors.New("upload: GatewayID, TLSConfig, VerifyReceipt and ReceiptDir are required"))
	}
	if o.MaxRate < 0 {
		errs = append(errs, fmt.Errorf("upload: max rate %d is negative", o.MaxRate))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Chunk <= 0 {
		o.Chunk = DefaultChunk
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.ReceiptDir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	up := &Uploader{o: o, log: o.Logger.With("component", "upload"), clock: o.Clock, base: u,
		lim: newLimiter(o.MaxRate, o.Clock), refused: map[string]bool{}}
	up.client = &http.Client{Transport: &http.Transport{TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: time.Minute,
		DialTLSContext: func(ctx context.Context, network, addr string) (netConn, error) {
			d := tls.Dialer{Config: o.TLSConfig()}
			return d.DialContext(ctx, network, addr)
		}}}
	return up, nil
}

// Sent returns the bytes of recordings sent since New (for metrics).
func (u *Uploader) Sent() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sent
}

func (u *Uploader) receiptPath(session string) string {
	return filepath.Join(u.o.ReceiptDir, session+".receipt")
}

// Archived reports whether central's receipt for session is held: the
// recording store's StoreOptions.Archived.
func (u *Uploader) Archived(session string) (bool, error) {
	_, err := os.Stat(u.receiptPath(session))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (u *Uploader) endpoint(session string) string {
	return u.base.JoinPath("api/v1/recordings", u.o.GatewayID, session).String()
}

// Upload sends the recording of session at path (resuming from what
// central holds) and keeps central's receipt, after checking it binds this
// gateway, the session, the recording's last hash and its size. It returns
// the receipt.
func (u *Uploader) Upload(ctx context.Context, session, path string) (*receipt.Receipt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", session, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", session, err)
	}
	size := st.Size()
	sum, err := recording.Verify(f, nil)
	if err != nil {
		// Central would refuse it too: keep it, say so.
		return nil, fmt.Errorf("upload %s: %w: the local copy does not verify: %w", session, ErrRefused, err)
	}
	head := sum.FinalHash
	ep := u.endpoint(session)
	offset, complete, err := u.offset(ctx, ep)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", session, err)
	}
	var rb []byte
	for !complete && rb == nil {
		n := min(u.o.Chunk, size-offset)
		var reqBody io.Reader = http.NoBody
		if n > 0 {
			reqBody = &limitedReader{r: io.NewSectionReader(f, offset, n), lim: u.lim, ctx: ctx, count: u.count}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, ep, reqBody)
		if err != nil {
			return nil, err
		}
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/cbor-seq")
		if n > 0 {
			req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, offset+n-1, size))
		} else { // central has every byte: ask it to finish
			req.Header.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		}
		resp, err := u.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("upload %s at %d: %w", session, offset, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusCreated:
			rb = body
		case http.StatusNoContent, http.StatusConflict:
			if resp.Header.Get("Upload-Complete") == "1" {
				complete = true
				break
			}
			next, perr := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
			if perr != nil || next < 0 || next > size {
				return nil, fmt.Errorf("upload %s: central answered %s without a usable Upload-Offset", session, resp.Status)
			}
			offset = next
		case http.StatusUnprocessableEntity:
			err := fmt.Errorf("upload %s: %w: %s", session, ErrRefused, bytes.TrimSpace(body))
			u.mu.Lock()
			u.refused[session] = true
			u.mu.Unlock()
			if u.o.OnRefused != nil {
				u.o.OnRefused(session, err)
			}
			return nil, err
		case http.StatusServiceUnavailable:
			return nil, fmt.Errorf("upload %s: %w", session, ErrNotYet)
		default:
			return nil, fmt.Errorf("upload %s: central answered %s: %s", session, resp.Status, bytes.TrimSpace(body))
		}
	}
	if rb == nil { // archived before (a lost answer): fetch the receipt
		if rb, err = u.fetchReceipt(ctx, ep); err != nil {
			return nil, fmt.Errorf("upload %s: %w", session, err)
		}
	}
	r, who, err := receipt.Verify(rb, u.o.VerifyReceipt, u.clock.Now(), u.o.GatewayID, session, head, size)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", session, err)
	}
	if err := atomicfile.Write(u.receiptPath(session), rb, 0o600); err != nil {
		return nil, fmt.Errorf("upload %s: keep receipt: %w", session, err)
	}
	u.log.Info("recording archived at central", "session", session, "bytes", size, "central", who)
	return r, nil
}

func (u *Uploader) count(n int) {
	u.mu.Lock()
	u.sent += int64(n)
	u.mu.Unlock()
}

func (u *Uploader) offset(ctx context.Context, ep string) (int64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, ep, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("ask central's offset: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("ask central's offset: %s", resp.Status)
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 {
		return 0, false, fmt.Errorf("ask central's offset: no usable Upload-Offset")
	}
	return off, resp.Header.Get("Upload-Complete") == "1", nil
}

func (u *Uploader) fetchReceipt(ctx context.Context, ep string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep+"/receipt", nil)
	if err != nil {
		return nil, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch receipt: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch receipt: %s", resp.Status)
	}
	return b, nil
}

// Run uploads ended, delivered, not yet archived recordings every
// Interval until ctx ends. Refused recordings are not retried until a
// restart.
func (u *Uploader) Run(ctx context.Context) error {
	if u.o.Store == nil {
		return errors.New("upload: Run needs Options.Store")
	}
	t := u.clock.NewTicker(u.o.Interval)
	defer t.Stop()
	for {
		u.Round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.Chan():
		}
	}
}

// Round uploads what is due once (Run calls it every Interval) and returns
// how many recordings were archived.
func (u *Uploader) Round(ctx context.Context) int {
	n := 0
	for _, rec := range u.o.Store.EndedRecordings() {
		if ctx.Err() != nil {
			return n
		}
		u.mu.Lock()
		refused := u.refused[rec.Session]
		u.mu.Unlock()
		if done, _ := u.Archived(rec.Session); done || refused {
			continue
		}
		if u.o.Delivered != nil {
			if ok, err := u.o.Delivered(rec.EndSeq); err != nil || !ok {
				continue
			}
		}
		if _, err := u.Upload(ctx, rec.Session, rec.Path); err != nil {
			u.log.Warn("recording upload failed; retried later", "session", rec.Session, "err", err)
			continue
		}
		n++
	}
	return n
}
