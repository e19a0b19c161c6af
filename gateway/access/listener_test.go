package access

import (
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/wardgate/wardgate/gateway/access/recording"
	"github.com/wardgate/wardgate/gateway/front"
)

func TestClinicalPortRefusedEvenIfListed(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Devices[0].Ports = []int{23, 7001, 8080} })
	re := e.refused(e.jo, "pump-07:7001")
	if re.Status != 403 || re.Code != CodeClinicalPort || !strings.Contains(re.Reason, "(service ports: 23, 8080)") {
		t.Fatalf("%+v", re)
	}
	if n := e.ev.count(EvRequest); n != 0 {
		t.Fatalf("clinical port recorded %d requests", n)
	}
	// The service ports stay reachable.
	if re := e.refused(e.jo, "pump-07:23"); re.Code != CodeNoGrant {
		t.Fatalf("%+v", re)
	}
}

func TestCBCOnlyClientRefused(t *testing.T) {
	e := newEnv(t)
	cfg := e.jo.tls.Clone()
	cfg.MaxVersion = tls.VersionTLS12
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
	if c, err := tls.Dial("tcp", e.addr, cfg); err == nil {
		c.Close()
		t.Fatalf("CBC-only TLS 1.2 client completed the handshake (suite %#x)", c.ConnectionState().CipherSuite)
	}
	ev := e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Code == CodeHandshake })
	if ev.Reason != HandshakeProtocol {
		t.Fatalf("%+v", ev)
	}
	// An AEAD TLS 1.2 client is served.
	cfg.CipherSuites = nil
	if _, err := (&Client{Gateway: e.addr, Target: "pump-07:23", TLS: cfg}).DialTunnel(context.Background()); !isRefused(err, CodeNoGrant) {
		t.Fatalf("TLS 1.2 AEAD client: %v", err)
	}
}

func isRefused(err error, code string) bool {
	var re *RefusedError
	return errors.As(err, &re) && re.Code == code
}

// A client offering only an unknown ALPN name is refused with a fixed
// reason: the name it chose is not reported.
func TestHandshakeReasonNeverQuotesClient(t *testing.T) {
	e := newEnv(t)
	cfg := e.jo.tls.Clone()
	cfg.NextProtos = []string{"evil\x1b[31m-proto"}
	if c, err := tls.Dial("tcp", e.addr, cfg); err == nil {
		c.Close()
		t.Fatal("unknown ALPN accepted")
	}
	ev := e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Code == CodeHandshake })
	if ev.Reason != HandshakeProtocol {
		t.Fatalf("%+v", ev)
	}
}

func TestRequestTextCapped(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("p", 300)
	re := e.refused(e.jo, long+":23")
	if re.Code != CodeUnknownDevice {
		t.Fatalf("%+v", re)
	}
	ev := e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Code == CodeUnknownDevice })
	if len(ev.Device) > maxEventText+3 || strings.Contains(ev.Reason, long) {
		t.Fatalf("device %d bytes, reason %d bytes", len(ev.Device), len(ev.Reason))
	}
	cl := e.client(e.jo, "pump-07:23")
	cl.Reason = strings.Repeat("r", 1000) + "\u00e9"
	if _, err := cl.DialTunnel(context.Background()); !isRefused(err, CodeNoGrant) {
		t.Fatal(err)
	}
	req := e.ev.wait(t, EvRequest, nil)
	if len(req.Reason) > maxEventText+3 || strings.ContainsFunc(req.Reason, func(r rune) bool { return r < 0x20 || r >= 0x7f }) {
		t.Fatalf("request reason %q", req.Reason)
	}
}

func TestBusyWhenSessionsFull(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ConnLimits = front.Limits{MaxConns: 1} })
	_, c := approveTunnel(e, "pump-07:23")
	re := e.refused(e.jo, "pump-07:23")
	if re.Status != 503 || re.Code != CodeBusy || !strings.Contains(re.Reason, "gateway busy") {
		t.Fatalf("%+v", re)
	}
	ev := e.ev.wait(t, EvRefused, func(ev Event) bool { return ev.Code == CodeConnLimit })
	if !strings.HasPrefix(ev.Remote, "127.0.") || strings.Contains(ev.Remote, ":") || ev.Count != 1 {
		t.Fatalf("%+v", ev)
	}
	e.roundTrip(c, "unaffected")
	c.Close()
	e.ev.wait(t, EvSessionEnd, nil)
	e.tunnel(e.jo, "pump-07:23").Close()
}

// A flood of refused connections from one address yields a bounded number
// of events whose counts add up.
func TestRefusalFloodIsBounded(t *testing.T) {
	const n, workers, window = 300, 20, 10 * time.Second
	noted := make(chan struct{}, n+10)
	e := newEnv(t, func(o *Options) {
		o.ConnLimits = front.Limits{MaxPerSource: 2, MaxPending: 1000}
		o.EventWindow = window
		o.noted = func() { noted <- struct{}{} }
	})
	cfg := e.jo.tls.Clone()
	cfg.Certificates = nil
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				if c, err := tls.Dial("tcp", e.addr, cfg); err == nil {
					c.Close()
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	timeout := time.After(30 * time.Second)
	for i := range n {
		select {
		case <-noted:
		case <-timeout:
			t.Fatalf("%d refusals noted, want %d", i, n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil { // the fold ticker
		t.Fatal(err)
	}
	e.clock.Advance(window)
	sum := func() (total, events int, codes map[string]int) {
		codes = map[string]int{}
		for _, ev := range e.ev.all() {
			if ev.Kind == EvRefused {
				total += ev.Count
				events++
				codes[ev.Code] += ev.Count
			}
		}
		return
	}
	deadline := time.After(10 * time.Second)
	for {
		total, _, _ := sum()
		if total == n {
			break
		}
		select {
		case <-e.ev.ch:
		case <-deadline:
			t.Fatalf("refusal counts add up to %d, want %d: %+v", total, n, e.ev.all())
		}
	}
	total, events, codes := sum()
	if events >= 10 || codes[CodeHandshake] == 0 {
		t.Fatalf("%d events for %d refusals (%v): %+v", events, total, codes, e.ev.all())
	}
	for _, ev := range e.ev.all() {
		if ev.Kind != EvRefused {
			continue
		}
		if ev.Count == 1 && ev.Remote == "" || ev.Count > 1 && (ev.Remote != "127.0.0.1" || !strings.Contains(ev.Reason, "more like this in the last 10s")) {
			t.Errorf("event %+v", ev)
		}
		if ev.Code == CodeHandshake && ev.Count == 1 && ev.Reason != HandshakeNoCertificate {
			t.Errorf("handshake event %+v", ev)
		}
	}
	t.Logf("%d refusals reported in %d events: %v", total, events, codes)
}

// A recording whose session never ended (the gateway stopped) is reported
// with a session-end event at the next start.
func TestUnendedRecordingReported(t *testing.T) {
	e := newEnv(t)
	id, c := approveTunnel(e, "pump-07:23")
	c.Close()
	e.ev.wait(t, EvSessionEnd, nil)
	e.stop()
	// As if the process died during session 2: a recording without end.
	rs, err := recording.OpenStore(e.recDir(), e.recOpts)
	if err != nil {
		t.Fatal(err)
	}
	w, err := rs.Create(id+"-2", recording.Header{Grant: id, Start: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(e.clock.Now(), ""); err != nil {
		t.Fatal(err)
	}
	// Session 3 ended under an older version, which noted it in its index.
	if w, err = rs.Create(id+"-3", recording.Header{Grant: id, Start: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(e.clock.Now(), "closed"); err != nil {
		t.Fatal(err)
	}
	st, err := OpenStore(filepath.Join(e.dir, "access.db"))
	if err != nil {
		t.Fatal(err)
	}
	err = st.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketRecordings)
		if err != nil {
			return err
		}
		return b.Put([]byte(id+"-3"), []byte(`{"session":"`+id+`-3","file":"`+id+`-3.cbor","ended":"2026-11-01T08:00:00Z","hash":"abcd","acked":true}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	e.ev = newEvents()
	e.start()
	end := e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Session == id+"-2" })
	if end.Reason != "gateway stopped during the session" || end.Hash != "" || end.Grant != id || end.Device != "pump-07" {
		t.Fatalf("%+v", end)
	}
	old := e.ev.wait(t, EvSessionEnd, func(ev Event) bool { return ev.Session == id+"-3" })
	if old.Reason != "session ended at 2026-11-01T08:00:00Z, before this gateway version" || old.Hash != "abcd" {
		t.Fatalf("%+v", old)
	}
	if n := e.ev.count(EvSessionEnd); n != 2 {
		t.Fatalf("%d session ends after restart", n)
	}
	if u := e.rec.Unended(); len(u) != 0 {
		t.Fatalf("still unended: %v", u)
	}
}
