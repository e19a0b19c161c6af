package archive

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/internal/atomicfile"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/recchain"
	"github.com/wardgate/wardgate/wire/receipt"
)

// PathPrefix is where the handler serves.
const PathPrefix = "/api/v1/recordings/"

// ErrUnknownSession is returned by Options.ExpectedHead while central has
// not stored the session's signed session-end event: the upload is
// answered 503 and the gateway retries later.
var ErrUnknownSession = errors.New("session-end event not received yet")

// Finding reports a refused upload.
type Finding struct {
	Time    time.Time
	Gateway string
	Session string
	Reason  string
	Bytes   int64
}

// Options configure an Archive.
type Options struct {
	// Dir is the root of the store (required; created 0700).
	Dir string
	// TrustDomain of gateway identities (required).
	TrustDomain string
	// ExpectedHead returns the last hash of the recording as the signed
	// session-end event of gateway's session states it (central's store
	// looks the event up), or ErrUnknownSession. Required.
	ExpectedHead func(ctx context.Context, gateway, session string) ([]byte, error)
	// Signer returns central's key and chain for receipts. Required.
	Signer func() (crypto.Signer, []*x509.Certificate)
	// OnFinding is called for a tampered or truncated upload (nil: logged
	// only).
	OnFinding func(Finding)
	// Retention returns how long a recording is kept after it was archived
	// (0: for good) and whether it is under legal hold (kept regardless).
	// Nil: kept for good.
	Retention func(gateway, session string) (keep time.Duration, hold bool)
	// OnArchived is called after a recording verified and was stored
	// (nil: logged only).
	OnArchived func(gateway, session string, size int64)
	// OnPruned is called for each recording Prune deleted.
	OnPruned func(gateway, session string)
	// Verifier, when set, verifies the client's chain
	// (r.TLS.PeerCertificates) itself against the gateway's identity: for
	// listeners that check client certificates in VerifyConnection (as
	// certs.Verifier.ServerTLSConfig does), where r.TLS.VerifiedChains is
	// empty. Nil: the chain crypto/tls verified (ClientAuth
	// RequireAndVerifyClientCert) is used.
	Verifier *certs.Verifier
	// MaxCertLifetime bounds the gateway certificate's lifetime when
	// Verifier is set (0: certs.DefaultMaxPeerLifetime).
	MaxCertLifetime time.Duration
	// MaxSize bounds one recording (default 4 GiB).
	MaxSize int64
	Clock   clockwork.Clock // default: real clock
	Logger  *slog.Logger    // default: discard
}

// Archive serves and stores uploads. Create it with New.
type Archive struct {
	o     Options
	log   *slog.Logger
	clock clockwork.Clock

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// New checks o and creates the store directory.
func New(o Options) (*Archive, error) {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("archive: Dir is required"))
	}
	if o.TrustDomain == "" {
		errs = append(errs, errors.New("archive: TrustDomain is required"))
	}
	if o.ExpectedHead == nil || o.Signer == nil {
		errs = append(errs, errors.New("archive: ExpectedHead and Signer are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.MaxSize <= 0 {
		o.MaxSize = 4 << 30
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return &Archive{o: o, log: o.Logger.With("component", "archive"), clock: o.Clock, locks: map[string]*sync.Mutex{}}, nil
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ValidKey reports whether gw and session can name an archived recording
// (a gateway id, and a session id of letters, digits, '.', '_' and '-').
func ValidKey(gw, session string) bool {
	return envelope.ValidGatewayID(gw) && idRe.MatchString(session)
}

func (a *Archive) lock(key string) func() {
	a.mu.Lock()
	m, ok := a.locks[key]
	if !ok {
		m = &sync.Mutex{}
		a.locks[key] = m
	}
	a.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// paths of one recording: the part being uploaded, the archived file, its
// receipt, and a refused upload kept as evidence.
func (a *Archive) paths(gw, session string) (part, final, rcpt, refused string) {
	d := filepath.Join(a.o.Dir, gw)
	return filepath.Join(d, session+".cbor.part"), filepath.Join(d, session+".cbor"),
		filepath.Join(d, session+".receipt"), filepath.Join(d, session+".refused")
}

// ServeHTTP implements the protocol of the package documentation.
func (a *Archive) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 || len(parts) > 3 || !envelope.ValidGatewayID(parts[0]) || !idRe.MatchString(parts[1]) ||
		(len(parts) == 3 && parts[2] != "receipt") {
		http.Error(w, "not found: use /api/v1/recordings/GATEWAY/SESSION", http.StatusNotFound)
		return
	}
	gw, session := parts[0], parts[1]
	if err := a.authorize(r, gw); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	unlock := a.lock(gw + "/" + session)
	defer unlock()
	part, final, rcpt, _ := a.paths(gw, session)
	switch {
	case len(parts) == 3 && r.Method == http.MethodGet:
		b, err := os.ReadFile(rcpt)
		if err != nil {
			http.Error(w, "no receipt: the recording is not archived", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/cose")
		_, _ = w.Write(b)
	case len(parts) == 2 && r.Method == http.MethodHead:
		if st, err := os.Stat(final); err == nil {
			w.Header().Set("Upload-Offset", strconv.FormatInt(st.Size(), 10))
			w.Header().Set("Upload-Complete", "1")
			return
		}
		w.Header().Set("Upload-Offset", strconv.FormatInt(size(part), 10))
	case len(parts) == 2 && r.Method == http.MethodPut:
		a.put(w, r, gw, session)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (a *Archive) authorize(r *http.Request, gw string) error {
	want := "spiffe://" + a.o.TrustDomain + "/gateway/" + gw
	if a.o.Verifier != nil {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return errors.New("a gateway client certificate is required")
		}
		if _, err := a.o.Verifier.Verify(r.TLS.PeerCertificates, certs.PeerPolicy{TrustDomain: a.o.TrustDomain,
			Allow: []certs.Pattern{certs.MustCompilePattern(want)}, MaxLifetime: a.o.MaxCertLifetime}); err != nil {
			return fmt.Errorf("the client certificate is not %s: %w", want, err)
		}
		return nil
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return errors.New("a verified client certificate is required")
	}
	for _, u := range r.TLS.VerifiedChains[0][0].URIs {
		if u.String() == want {
			return nil
		}
	}
	return fmt.Errorf("the client certificate is not %s", want)
}

func size(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// parseRange parses "bytes START-END/TOTAL".
func parseRange(s string) (start, end, total int64, err error) {
	v, ok := strings.CutPrefix(s, "bytes ")
	se, tot, ok2 := strings.Cut(v, "/")
	st, en, ok3 := strings.Cut(se, "-")
	if !ok || !ok2 || !ok3 {
		return 0, 0, 0, errors.New("Content-Range must be bytes START-END/TOTAL")
	}
	start, e1 := strconv.ParseInt(st, 10, 64)
	end, e2 := strconv.ParseInt(en, 10, 64)
	total, e3 := strconv.ParseInt(tot, 10, 64)
	if e1 != nil || e2 != nil || e3 != nil || start < 0 || end < start || total <= end {
		return 0, 0, 0, errors.New("Content-Range must be bytes START-END/TOTAL with START <= END < TOTAL")
	}
	return start, end, total, nil
}

func (a *Archive) put(w http.ResponseWriter, r *http.Request, gw, session string) {
	part, final, rcpt, _ := a.paths(gw, session)
	if _, err := os.Stat(final); err == nil {
		w.Header().Set("Upload-Complete", "1")
		http.Error(w, "already archived: GET the receipt", http.StatusConflict)
		return
	}
	if tot, ok := strings.CutPrefix(r.Header.Get("Content-Range"), "bytes */"); ok {
		// Every byte is here already (the last answer was 503 or lost):
		// check and archive.
		total, err := strconv.ParseInt(tot, 10, 64)
		if have := size(part); err != nil || have != total {
			w.Header().Set("Upload-Offset", strconv.FormatInt(have, 10))
			http.Error(w, fmt.Sprintf("the archive has %d bytes, not %s; send from there", have, tot), http.StatusConflict)
			return
		}
		a.complete(w, r.Context(), gw, session, part, final, rcpt, total)
		return
	}
	start, end, total, err := parseRange(r.Header.Get("Content-Range"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if total > a.o.MaxSize {
		http.Error(w, fmt.Sprintf("recording of %d bytes is larger than the archive accepts (%d)", total, a.o.MaxSize), http.StatusRequestEntityTooLarge)
		return
	}
	have := size(part)
	if start != have {
		w.Header().Set("Upload-Offset", strconv.FormatInt(have, 10))
		http.Error(w, fmt.Sprintf("the archive has %d bytes; send from there", have), http.StatusConflict)
		return
	}
	if err := os.MkdirAll(filepath.Dir(part), 0o700); err != nil {
		a.fail(w, err)
		return
	}
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		a.fail(w, err)
		return
	}
	n, cerr := io.Copy(f, io.LimitReader(r.Body, end-start+1))
	serr := f.Sync()
	_ = f.Close()
	if cerr != nil || serr != nil || n != end-start+1 {
		// What arrived is kept (synced or not, it is the client's bytes in
		// order); the client asks for the offset and resumes.
		w.Header().Set("Upload-Offset", strconv.FormatInt(size(part), 10))
		http.Error(w, "chunk incomplete; resume from Upload-Offset", http.StatusBadRequest)
		return
	}
	have += n
	if have < total {
		w.Header().Set("Upload-Offset", strconv.FormatInt(have, 10))
		w.WriteHeader(http.StatusNoContent)
		return
	}
	a.complete(w, r.Context(), gw, session, part, final, rcpt, have)
}

func (a *Archive) complete(w http.ResponseWriter, ctx context.Context, gw, session, part, final, rcpt string, n int64) {
	want, err := a.o.ExpectedHead(ctx, gw, session)
	if errors.Is(err, ErrUnknownSession) {
		w.Header().Set("Retry-After", "60")
		http.Error(w, "central has not received this session's signed session-end event yet; retry later", http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	f, err := os.Open(part)
	if err != nil {
		a.fail(w, err)
		return
	}
	sum, cerr := recchain.Check(f, want)
	_ = f.Close()
	if cerr != nil {
		_, _, _, refused := a.paths(gw, session)
		_ = os.Rename(part, refused) // kept as evidence; a new upload starts from 0
		a.log.Warn("recording upload refused", "gateway", gw, "session", session, "err", cerr)
		if a.o.OnFinding != nil {
			a.o.OnFinding(Finding{Time: a.clock.Now(), Gateway: gw, Session: session, Reason: cerr.Error(), Bytes: n})
		}
		http.Error(w, "recording refused: "+cerr.Error(), http.StatusUnprocessableEntity)
		return
	}
	key, chain := a.o.Signer()
	rb, err := receipt.Sign(key, chain, receipt.Receipt{Gateway: gw, Session: session, Head: sum.Head, Size: n, Stored: a.clock.Now().UnixMilli()})
	if err != nil {
		a.fail(w, err)
		return
	}
	if err := atomicfile.Write(rcpt, rb, 0o600); err != nil {
		a.fail(w, err)
		return
	}
	if err := os.Rename(part, final); err != nil {
		a.fail(w, err)
		return
	}
	syncDir(filepath.Dir(final))
	a.log.Info("recording archived", "gateway", gw, "session", session, "bytes", n)
	if a.o.OnArchived != nil {
		a.o.OnArchived(gw, session, n)
	}
	w.Header().Set("Content-Type", "application/cose")
	w.Header().Set("Upload-Complete", "1")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(rb)
}

func (a *Archive) fail(w http.ResponseWriter, err error) {
	a.log.Error("archive", "err", err)
	http.Error(w, "archive error; retry later", http.StatusInternalServerError)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Path returns the archived file of gateway's session ("" when not
// archived), for playback and export.
func (a *Archive) Path(gw, session string) string {
	if !ValidKey(gw, session) {
		return ""
	}
	_, final, _, _ := a.paths(gw, session)
	if _, err := os.Stat(final); err != nil {
		return ""
	}
	return final
}

// ReceiptPath returns the receipt file of gateway's session ("" when
// there is none).
func (a *Archive) ReceiptPath(gw, session string) string {
	if !ValidKey(gw, session) {
		return ""
	}
	_, _, rcpt, _ := a.paths(gw, session)
	if _, err := os.Stat(rcpt); err != nil {
		return ""
	}
	return rcpt
}

// IsUploadPath reports whether r is a request of the upload protocol
// (HEAD or PUT of a recording, GET of its receipt): the only requests a
// gateway's certificate may make on a listener shared with operators.
func IsUploadPath(r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok {
		return false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2:
		return r.Method == http.MethodHead || r.Method == http.MethodPut
	case len(parts) == 3 && parts[2] == "receipt":
		return r.Method == http.MethodGet || r.Method == http.MethodHead
	}
	return false
}

// Prune deletes archived recordings whose retention (Options.Retention,
// counted from the file's last write, when it was archived) passed and
// that are not under legal hold; their receipts stay. It returns how many
// it deleted.
func (a *Archive) Prune() (int, error) {
	if a.o.Retention == nil {
		return 0, nil
	}
	now := a.clock.Now()
	gws, err := os.ReadDir(a.o.Dir)
	if err != nil {
		return 0, fmt.Errorf("archive prune: %w", err)
	}
	n := 0
	var errs []error
	for _, g := range gws {
		if !g.IsDir() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(a.o.Dir, g.Name(), "*.cbor"))
		for _, f := range files {
			session := strings.TrimSuffix(filepath.Base(f), ".cbor")
			keep, hold := a.o.Retention(g.Name(), session)
			st, err := os.Stat(f)
			if err != nil || hold || keep <= 0 || now.Sub(st.ModTime()) < keep {
				continue
			}
			unlock := a.lock(g.Name() + "/" + session)
			err = os.Remove(f)
			unlock()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			n++
			if a.o.OnPruned != nil {
				a.o.OnPruned(g.Name(), session)
			}
		}
	}
	return n, errors.Join(errs...)
}
