package archive

import (
	"context"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 5-5/6", 5, 5, 6, true},
		{"bytes 0-9/9", 0, 0, 0, false},
		{"bytes 9-0/10", 0, 0, 0, false},
		{"bytes -1-3/10", 0, 0, 0, false},
		{"0-9/10", 0, 0, 0, false},
		{"bytes 0-9", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		s, e, tot, err := parseRange(c.in)
		if c.ok != (err == nil) || c.ok && (s != c.start || e != c.end || tot != c.total) {
			t.Errorf("%q: %d %d %d %v", c.in, s, e, tot, err)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes 0-9/10")
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, err := parseRange(s)
		if err == nil && (start < 0 || end < start || total <= end) {
			t.Fatalf("%q accepted as %d-%d/%d", s, start, end, total)
		}
	})
}

func TestPruneRetentionAndHold(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClockAt(time.Now())
	a, err := New(Options{Dir: dir, TrustDomain: "hospital.example", Clock: clock,
		ExpectedHead: func(context.Context, string, string) ([]byte, error) { return nil, ErrUnknownSession },
		Signer:       func() (crypto.Signer, []*x509.Certificate) { return nil, nil },
		Retention: func(gw, session string) (time.Duration, bool) {
			switch session {
			case "held":
				return time.Hour, true
			case "forever":
				return 0, false
			}
			return time.Hour, false
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"old", "held", "forever"} {
		if err := os.MkdirAll(filepath.Join(dir, "gw-1"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "gw-1", s+".cbor"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := a.Prune(); n != 0 || err != nil {
		t.Fatalf("prune at once: %d %v", n, err)
	}
	clock.Advance(2 * time.Hour)
	if n, err := a.Prune(); n != 1 || err != nil {
		t.Fatalf("prune after retention: %d %v", n, err)
	}
	if a.Path("gw-1", "old") != "" || a.Path("gw-1", "held") == "" || a.Path("gw-1", "forever") == "" {
		t.Fatal("wrong recordings pruned")
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New accepted empty options")
	}
}
