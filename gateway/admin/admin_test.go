package admin

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

func TestServerRecordsPeerUID(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "admin.sock")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Say string }
		if err := ReadJSON(r, &in); err != nil {
			WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"said": in.Say, "uid": PeerUID(r)})
	})
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Path: sock, Handler: mux, Group: -1}
	l, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()

	c := NewClient(sock)
	var out struct {
		Said string
		UID  int
	}
	if err := c.Do(ctx, "POST", "/v1/echo", map[string]string{"Say": "hi"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.Said != "hi" || out.UID != os.Getuid() {
		t.Errorf("got %+v, want uid %d", out, os.Getuid())
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, %v", st.Mode(), err)
	}
	err = c.Do(ctx, "POST", "/v1/echo", map[string]any{"Bogus": 1}, &out)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Errorf("unknown field: %v", err)
	}
	// A second agent on the same socket is refused.
	if err := (&Server{Path: sock, Handler: mux, Group: -1}).Run(ctx); err == nil {
		t.Error("second server on a live socket was allowed")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := NewClient(sock).Do(context.Background(), "GET", "/v1/echo", nil, nil); !errors.Is(err, ErrNoAgent) {
		t.Errorf("no agent: %v", err)
	}
}
