package upload

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// The end-to-end tests against central's archive over HTTPS mTLS are in
// cmd/fleete2e (only cmd may import both sides).

func TestNewRefuses(t *testing.T) {
	ok := Options{URL: "https://central.example:8444", GatewayID: "gw-1", TLSConfig: func() *tls.Config { return nil },
		VerifyReceipt: func([]*x509.Certificate, time.Time) (string, error) { return "", nil }, ReceiptDir: t.TempDir()}
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"http url", func(o *Options) { o.URL = "http://central.example" }, "https://"},
		{"no url", func(o *Options) { o.URL = "" }, "https://"},
		{"no gateway", func(o *Options) { o.GatewayID = "" }, "required"},
		{"no receipt verifier", func(o *Options) { o.VerifyReceipt = nil }, "required"},
		{"negative rate", func(o *Options) { o.MaxRate = -1 }, "negative"},
	} {
		o := ok
		c.mod(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	u, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := u.Archived("S-1"); a || err != nil {
		t.Fatalf("Archived without receipt: %v %v", a, err)
	}
	if err := os.WriteFile(filepath.Join(ok.ReceiptDir, "S-1.receipt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a, err := u.Archived("S-1"); !a || err != nil {
		t.Fatalf("Archived with receipt: %v %v", a, err)
	}
}

// TestLimiterPaces: grants are scheduled n/rate apart on the injected clock.
func TestLimiterPaces(t *testing.T) {
	clock := clockwork.NewFakeClock()
	l := newLimiter(1000, clock) // bytes per second
	ctx := context.Background()
	if err := l.wait(ctx, 500); err != nil { // the first goes at once
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = l.wait(ctx, 500); close(done) }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("second grant did not wait")
	default:
	}
	clock.Advance(500 * time.Millisecond)
	<-done
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.wait(cctx, 1000); err == nil {
		t.Fatal("cancelled wait returned nil")
	}
	if err := newLimiter(0, clock).wait(ctx, 1<<30); err != nil {
		t.Fatal(err)
	}
}
