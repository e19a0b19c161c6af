package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoAgent is returned by Client when no agent listens on the socket.
var ErrNoAgent = errors.New("no wardgate agent is running on the admin socket")

type ctxKey struct{}

// peer is the caller's credentials, as the kernel reported them.
type peer struct{ uid, pid int }

// PeerUID returns the uid of the process that made the request, or -1 when
// unknown.
func PeerUID(r *http.Request) int {
	if p, ok := r.Context().Value(ctxKey{}).(peer); ok {
		return p.uid
	}
	return -1
}

// Server serves an http.Handler on a UNIX socket.
type Server struct {
	Path    string       // socket path; its directory is created 0750
	Handler http.Handler // the routes
	Logger  *slog.Logger
	// Group, when >= 0, is given group ownership of the socket so that
	// operators in that group may use it. -1 leaves it unchanged.
	Group int
}

// Run listens on the socket and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	l, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}

// Listen creates the socket (mode 0660). A stale socket file left by a
// crashed agent is replaced; a live one is refused.
func (s *Server) Listen() (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o750); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", s.Path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agent is already serving %s; stop it first", s.Path)
	}
	_ = os.Remove(s.Path)
	l, err := net.Listen("unix", s.Path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(s.Path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket mode: %w", err)
	}
	if s.Group >= 0 {
		_ = os.Chown(s.Path, -1, s.Group)
	}
	return l, nil
}

// Serve serves l until ctx ends, then removes the socket file.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, credentials(c))
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		_ = os.Remove(s.Path)
		return nil
	case err := <-errc:
		return fmt.Errorf("admin socket: %w", err)
	}
}

func credentials(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{-1, -1}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{-1, -1}
	}
	p := peer{-1, -1}
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			p = peer{int(cred.Uid), int(cred.Pid)}
		}
	})
	return p
}

// WriteJSON writes v with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Error is the JSON body of every failed request.
type Error struct {
	Error string `json:"error"`
}

// WriteError writes {"error": msg} with status code.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, Error{Error: msg})
}

// ReadJSON decodes a request body of at most 64 KiB, refusing unknown
// fields.
func ReadJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	return nil
}

// Client calls an agent's admin API.
type Client struct {
	Path string
	http *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	return &Client{Path: path, http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// APIError is a refusal by the agent, with its HTTP status.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

// Do sends a request with body (JSON-encoded unless nil) and decodes the
// answer into out (unless nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://wardgate"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && (errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ECONNREFUSED)) {
			return fmt.Errorf("%w (%s); start it with `wardgate run --config FILE` or pass --socket", ErrNoAgent, c.Path)
		}
		if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("permission denied on %s; run as root or as a member of the socket's group", c.Path)
		}
		return fmt.Errorf("admin socket %s: %w", c.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &APIError{Status: resp.StatusCode, Msg: e.Error}
		}
		return &APIError{Status: resp.StatusCode, Msg: fmt.Sprintf("agent answered %s", resp.Status)}
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], data...)
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("agent answer: %w", err)
		}
	}
	return nil
}
