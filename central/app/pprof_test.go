package app

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestServePprof(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	stop, addr, err := servePprof("", log)
	if err != nil || addr != "" {
		t.Fatalf("off: %q %v", addr, err)
	}
	stop()

	stop, addr, err = servePprof("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	if err != nil {
		stop()
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		stop()
		t.Fatalf("index: %d %.200s", resp.StatusCode, body)
	}
	// The address is taken: a second profiler on it is refused, naming the key.
	if _, _, err := servePprof(addr, log); err == nil || !strings.Contains(err.Error(), "central.pprof_listen") {
		t.Fatalf("second listener on %s: %v", addr, err)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Fatal("still serving after stop")
	}
}
