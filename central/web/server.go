package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/commands"
	"github.com/wardgate/wardgate/central/ingest"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/certs"
)

// Options configures a Server.
type Options struct {
	Store       *store.Store // required
	TrustDomain string       // required: users are spiffe://TD/approver/...
	// Stats returns the ingest counters for /metrics; nil: none.
	Stats   func() ingest.Stats
	Version string
	Clock   clockwork.Clock
	Logger  *slog.Logger
	// Commands queues submitted commands and lock sets; nil: the submit
	// endpoints answer 503 (reads still work).
	Commands *commands.Service
	// User names the authenticated user of r; default: the SPIFFE
	// identity of the TLS client certificate, which must be an approver.
	User func(r *http.Request) (string, error)
	// Recordings, when set, mounts the recordings archive: gateways'
	// certificates reach its upload protocol and nothing else.
	Recordings *RecordingsOptions
}

// Server serves the API, the pages, /live and /metrics.
type Server struct {
	o     Options
	clock clockwork.Clock
	log   *slog.Logger
	mux   *http.ServeMux

	mu      sync.Mutex
	clients map[chan []byte]struct{}
	started time.Time
	reqs    map[string]uint64 // by route class, for /metrics
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.TrustDomain == "" {
		return nil, errors.New("web: a store and the trust domain are required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, clock: o.Clock, log: o.Logger.With("component", "central-web"), mux: http.NewServeMux(),
		clients: map[chan []byte]struct{}{}, reqs: map[string]uint64{}}
	if s.o.User == nil {
		s.o.User = s.tlsUser
	}
	s.started = s.clock.Now()
	s.routes()
	return s, nil
}

// tlsUser returns the approver identity of the client certificate.
func (s *Server) tlsUser(r *http.Request) (string, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", errors.New("a client certificate is required")
	}
	id, err := certs.IdentityFromCert(r.TLS.PeerCertificates[0], s.o.TrustDomain)
	if err != nil {
		return "", err
	}
	if id.Kind != certs.KindApprover {
		return "", fmt.Errorf("%s is not an approver identity", id.URI)
	}
	return id.URI, nil
}

type userKey struct{}

func userOf(r *http.Request) string {
	u, _ := r.Context().Value(userKey{}).(string)
	return u
}

// Handler returns the HTTP handler: authentication, cross-origin
// protection for state-changing requests, then the routes.
func (s *Server) Handler() http.Handler {
	cop := http.NewCrossOriginProtection()
	inner := cop.Handler(s.mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.gatewayPeer(r) {
			s.serveGateway(w, r)
			return
		}
		user, err := s.o.User(r)
		if err != nil {
			http.Error(w, "forbidden: "+err.Error()+"; present an approver certificate (spiffe://"+s.o.TrustDomain+"/approver/ROLE/PERSON)", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Frame-Options", "DENY")
		inner.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, user)))
	})
}

// Run serves h on ln until ctx ends, then shuts down within 5 seconds.
// ln is a TLS listener in production.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.closeClients()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-errc
	return nil
}

// Notify tells live pages that data changed.
func (s *Server) Notify(c ingest.Change) {
	msg := fmt.Appendf(nil, "event: change\ndata: {\"gateways\":%d,\"events\":%d,\"findings\":%d}\n\n", len(c.Gateways), c.Events, c.Findings)
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.clients {
		select {
		case ch <- msg:
		default: // a slow client misses one update; the next one refreshes it
		}
	}
}

func (s *Server) closeClients() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.clients {
		close(ch)
		delete(s.clients, ch)
	}
}

// live streams change notifications (Server-Sent Events).
func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan []byte, 4)
	s.mu.Lock()
	s.clients[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.clients, ch)
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	ping := s.clock.NewTicker(25 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(msg); err != nil {
				return
			}
			fl.Flush()
		case <-ping.Chan():
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Server) count(class string) {
	s.mu.Lock()
	s.reqs[class]++
	s.mu.Unlock()
}

// ApproverPolicy admits spiffe://TD/approver/** (operators) whose
// certificates live at most maxLifetime (0: certs.DefaultMaxPeerLifetime),
// for the TLS listener of the web UI and API.
func ApproverPolicy(td string, maxLifetime time.Duration) certs.PeerPolicy {
	return certs.PeerPolicy{TrustDomain: td, Allow: []certs.Pattern{certs.MustCompilePattern("spiffe://" + td + "/approver/**")},
		MaxLifetime: maxLifetime}
}

func (s *Server) liveClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}
