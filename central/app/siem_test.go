package app

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/config"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/siem"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSIEMOut: with siem: set, every line ingest hands over leaves in the
// configured format, in order, batched; without it nothing is opened.
func TestSIEMOut(t *testing.T) {
	if push, run, err := openSIEM(context.Background(), &config.Config{}, Options{}); err != nil || push != nil || run(context.Background()) != nil {
		t.Fatalf("without siem: push %v err %v", push != nil, err)
	}
	var out lockedBuffer
	cfg := &config.Config{SIEM: &siem.OutputConfig{Format: "json"}}
	ctx, cancel := context.WithCancel(context.Background())
	push, run, err := openSIEM(ctx, cfg, Options{Stdout: &out, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	const n = 600
	for i := 1; i <= n; i++ {
		push(wire.Line{Gateway: "gw-1", Seq: uint64(i), Kind: "event", Verified: true})
	}
	push(wire.Line{Alert: "verify_failed", Gateway: "gw-x", Error: "untrusted"})
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < n+1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records written", strings.Count(out.String(), "\n"), n+1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, l := range lines[:n] {
		var got wire.Line
		if err := json.Unmarshal([]byte(l), &got); err != nil || got.Seq != uint64(i+1) {
			t.Fatalf("record %d: %q (%v)", i, l, err)
		}
	}
	if !strings.Contains(lines[n], "verify_failed") {
		t.Errorf("alert line: %s", lines[n])
	}
}
