package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

const testTD = "hospital.example"

func newDevCA(t testing.TB, clk clockwork.Clock, lifetime time.Duration) *DevCA {
	t.Helper()
	ca, err := NewDevCA(DevCAOptions{Clock: clk, Lifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func leafChain(t testing.TB, tc tls.Certificate) []*x509.Certificate {
	t.Helper()
	c, err := chainOf(&tc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventLog collects Manager events and lets tests await them.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	ch     chan Event
}

func newEventLog() *eventLog { return &eventLog{ch: make(chan Event, 1024)} }

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.ch <- e:
	default:
	}
}

// wait returns the next event of kind (skipping others) or fails after d
// of real time.
func (l *eventLog) wait(t testing.TB, kind EventKind, d time.Duration) Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e := <-l.ch:
			if e.Kind == kind {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %s event within %s; events: %v", kind, d, l.kinds())
			return Event{}
		}
	}
}

func (l *eventLog) count(kind EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (l *eventLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, string(e.Kind))
	}
	return out
}

// installTLS installs a tls.Certificate (as DevCA.Issue returns) into m.
func installTLS(m *Manager, tc *tls.Certificate) error {
	chain, err := chainOf(tc)
	if err != nil {
		return err
	}
	return m.Install(tc.PrivateKey.(crypto.Signer), chain)
}

// stepManager wires a Manager on an enrolled identity in dir against the
// step-ca at caURL, with o's retry settings (OpenGateway keeps the
// defaults).
func stepManager(dir, caURL string, o ManagerOptions) (*Manager, error) {
	store := NewStore(dir)
	roots, err := store.LoadRoots()
	if err != nil {
		return nil, err
	}
	bundle := NewBundle(roots...)
	client, err := NewStepClient(StepClientOptions{URL: caURL, Bundle: bundle, Clock: o.Clock, Logger: o.Logger, Timeout: o.AttemptTimeout})
	if err != nil {
		return nil, err
	}
	o.CA, o.Store, o.Bundle = client, store, bundle
	return NewManager(o)
}
