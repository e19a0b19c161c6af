package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// TestSiteCommands (real mosquitto): a 3-day lock addressed to the
// gateway's site is executed; an approve addressed to the site and a lock
// for another site are refused with their reasons in the replies.
func TestSiteCommands(t *testing.T) {
	pki := certstest.NewMini(t)
	broker := brokertest.StartMosquitto(t, pki)
	cons := startConsumer(t, pki, broker.URL, "gw-test")
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, broker.URL, "gw-test", gw, t.TempDir()) // site st-test
	handled := make(chan command.Command, 4)
	opts.Commands = func(_ context.Context, c command.Command) (string, error) {
		handled <- c
		return "locked", nil
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)
	central := centralClient(t, pki, broker.URL)
	appr := pki.Approver(t, "security", "jdoe")
	now := time.Now()
	bob := "spiffe://hospital.example/vendor/acme/bob"
	lock, err := command.SignTo(appr.Key, appr.Chain, command.To{Site: "st-test"}, command.Lock, []string{bob, "48h"}, now, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := command.SignTo(appr.Key, appr.Chain, command.To{Site: "st-other"}, command.Lock, []string{bob}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := envelope.Marshal(&command.Payload{Site: "st-test", Name: command.Approve, Args: []string{"G-1"},
		Nonce: []byte("0123456789abcdef"), IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli()})
	approve, err := envelope.Sign(appr.Key, appr.Chain, raw)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !p.Stats().Connected; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not connected")
		}
	}
	for _, m := range [][]byte{lock, approve, other} {
		publishCmd(t, central, "gw-test", m)
	}
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
	// Replies may overtake each other on the way (publishes are not
	// ordered), so find each by what it answers.
	find := func(what, cmd string, accepted bool, reason string) {
		t.Helper()
		for _, r := range replies() {
			rs, _ := r["reason"].(string)
			if r["command"] == cmd && r["accepted"] == accepted && strings.Contains(rs, reason) {
				return
			}
		}
		t.Fatalf("no reply for %s among %v", what, replies())
	}
	find("the site lock", command.Lock, true, "")
	find("the site approve", command.Approve, false, "must name exactly one gateway")
	find("the other site's lock", command.Lock, false, "another gateway")
	if c := <-handled; c.Name != command.Lock || c.Site != "st-test" || len(handled) != 0 {
		t.Fatalf("handled %+v (+%d)", c, len(handled))
	}
}
