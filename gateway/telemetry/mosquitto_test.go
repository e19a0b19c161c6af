package telemetry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/wire"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// centralClient connects as "central" (may publish commands).
func centralClient(t testing.TB, pki *certstest.MiniPKI, url string) paho.Client {
	t.Helper()
	central := pki.Issue(t, "central", "")
	co := paho.NewClientOptions().AddBroker(url).SetClientID("central-cmd").SetTLSConfig(pki.ClientTLS(central)).
		SetProtocolVersion(4).SetCleanSession(true)
	c := paho.NewClient(co)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("central connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publishCmd(t testing.TB, c paho.Client, gw string, msg []byte) {
	t.Helper()
	tok := c.Publish(wire.CommandTopic(gw), 1, false, msg)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish command: %v", tok.Error())
	}
}

func TestMosquittoFlow(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	cons := startConsumer(t, pki, broker.URL, "")
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, broker.URL, "gw-test", gw, t.TempDir())
	var handled []command.Command
	var mu sync.Mutex
	opts.Commands = func(_ context.Context, c command.Command) (string, error) {
		mu.Lock()
		handled = append(handled, c)
		mu.Unlock()
		return "locked", nil
	}
	opts.Inventory = func() wire.Inventory { return sampleInventory() }
	opts.Metrics = func() wire.Metrics { return sampleMetrics() }
	opts.MetricsInterval = 200 * time.Millisecond
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := runPublisher(t, p)
	for deadline := time.Now().Add(10 * time.Second); !p.Stats().Connected; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not connected")
		}
	}

	var seqs []uint64
	for i := range 20 {
		s, err := p.Event(wire.Event{Kind: "vendor.session.start", Attrs: map[string]string{"i": string(rune('a' + i))}})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, s)
	}
	cons.waitFor(t, 20*time.Second, "20 events", func() bool {
		for _, s := range seqs {
			if !cons.has("gw-test", s) {
				return false
			}
		}
		return true
	})
	l, _ := cons.get("gw-test", seqs[0])
	if !l.Verified || l.Kind != "event" || l.Signer != "spiffe://hospital.example/gateway/gw-test" {
		t.Fatalf("event line %+v", l)
	}
	// birth, inventory, accountability and metrics arrive too.
	kinds := func() map[string]int {
		cons.mu.Lock()
		defer cons.mu.Unlock()
		k := map[string]int{}
		for _, l := range cons.lines {
			k[l.Kind]++
		}
		return k
	}
	cons.waitFor(t, 20*time.Second, "birth, inventory, metrics", func() bool {
		k := kinds()
		return k["birth"] > 0 && k["inventory"] > 0 && k["metrics"] > 0
	})

	// A signed command from an approver is executed and answered.
	central := centralClient(t, pki, broker.URL)
	appr := pki.Approver(t, "security", "jdoe")
	cmd, err := command.Sign(appr.Key, appr.Chain, "gw-test", command.Lock, []string{"spiffe://hospital.example/vendor/acme/bob"}, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	publishCmd(t, central, "gw-test", cmd)
	publishCmd(t, central, "gw-test", cmd) // replay
	stranger := pki.Gateway(t, "gw-x")
	bad, _ := command.Sign(stranger.Key, stranger.Chain, "gw-test", command.Rebirth, nil, time.Now(), time.Minute)
	publishCmd(t, central, "gw-test", bad)

	replies := func() []map[string]any {
		cons.mu.Lock()
		defer cons.mu.Unlock()
		var out []map[string]any
		for _, l := range cons.lines {
			if l.Kind == "reply" {
				out = append(out, l.Body.(map[string]any))
			}
		}
		return out
	}
	cons.waitFor(t, 20*time.Second, "3 replies", func() bool { return len(replies()) >= 3 })
	r := replies()
	if r[0]["accepted"] != true || r[0]["result"] != "locked" || r[0]["approver"] != "spiffe://hospital.example/approver/security/jdoe" {
		t.Fatalf("reply 0: %v", r[0])
	}
	if r[1]["accepted"] != false || r[2]["accepted"] != false {
		t.Fatalf("replay/stranger accepted: %v %v", r[1], r[2])
	}
	mu.Lock()
	if len(handled) != 1 || handled[0].Name != command.Lock {
		t.Fatalf("handled %+v", handled)
	}
	mu.Unlock()
	if a := cons.alerts(); len(a) != 0 {
		t.Fatalf("alerts: %+v", a)
	}
	if l.Historical {
		t.Errorf("live event marked historical: %+v", l)
	}
	// What a SIEM reads: one JSON object per line with documented fields.
	for i, line := range strings.Split(strings.TrimSpace(cons.out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, line)
		}
		if m["kind"] == "event" {
			for _, f := range []string{"topic", "gateway", "session", "seq", "time", "verified", "signer", "body"} {
				if _, ok := m[f]; !ok {
					t.Fatalf("event line without %q: %s", f, line)
				}
			}
		}
	}

	// A clean stop publishes the death announced in the birth.
	stop()
	cons.waitFor(t, 20*time.Second, "death", func() bool { return kinds()["death"] > 0 })
	cons.mu.Lock()
	defer cons.mu.Unlock()
	var deathSeq, announced uint64
	for _, l := range cons.lines {
		switch l.Kind {
		case "death":
			deathSeq = l.Seq
		case "birth":
			announced = l.Body.(map[string]any)["death_seq"].(uint64)
		}
	}
	if deathSeq == 0 || deathSeq != announced {
		t.Fatalf("death seq %d, birth announced %d", deathSeq, announced)
	}
}

// TestMosquittoRefusesOtherGatewayTopic: a gateway configured with an id
// that is not its certificate's name is refused by the ACL and says so.
func TestMosquittoRefusesOtherGatewayTopic(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	cons := startConsumer(t, pki, broker.URL, "gw-other")
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, broker.URL, "gw-other", gw, t.TempDir())
	alarms := make(chan Alarm, 16)
	opts.OnAlarm = func(a Alarm) { alarms <- a }
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)
	if _, err := p.Event(wire.Event{Kind: "test"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for !got[AlarmPublishRefused] {
		select {
		case a := <-alarms:
			got[a.Kind] = true
		case <-deadline:
			t.Fatalf("no publish_refused alarm; got %v", got)
		}
	}
	if !got[AlarmIdentityMismatch] {
		t.Errorf("no identity_mismatch alarm; got %v", got)
	}
	if p.Stats().Refused == 0 {
		t.Error("Stats.Refused = 0")
	}
	// Nothing from gw-test's certificate appears under gw-other.
	cons.mu.Lock()
	n := len(cons.lines)
	cons.mu.Unlock()
	if n != 0 {
		t.Fatalf("consumer got %d lines on another gateway's topics", n)
	}
	_ = tls.VersionTLS13
	_ = envelope.KindBirth
}

// TestMosquittoPublishDeniedIsReported: when the ACL lets the gateway read
// its commands but not publish, mosquitto acknowledges and then closes the
// connection; wardgate notices the pattern and raises publish_refused.
func TestMosquittoPublishDeniedIsReported(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquittoACL(t, pki, "pattern read wardgate/v1/%u/cmd\n")
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, broker.URL, "gw-test", gw, t.TempDir())
	alarms := make(chan Alarm, 64)
	opts.OnAlarm = func(a Alarm) {
		select {
		case alarms <- a:
		default:
		}
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case a := <-alarms:
			if a.Kind == AlarmIdentityMismatch {
				t.Fatalf("unexpected %v", a)
			}
			if a.Kind == AlarmPublishRefused {
				return
			}
		case <-deadline:
			t.Fatalf("no publish_refused alarm: %+v", p.Stats())
		}
	}
}
