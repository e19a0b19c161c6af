package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/front"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// TestEndorsedLockAfterSignerExpired: a site lock whose signer's
// certificate expired since it was issued is refused as signed and
// applied with central's endorsement (command.VerifyWith wired with the
// publisher's VerifyCentral).
func TestEndorsedLockAfterSignerExpired(t *testing.T) {
	pki := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, "ssl://127.0.0.1:1", "gw-test", gw, t.TempDir())
	opts.Site = "icu"
	// The gateway checks three hours from now: the approver's certificate
	// lasts from 5 minutes to an hour from now (the test CA starts now),
	// and the lock is signed 10 minutes from now for three days.
	now := time.Now()
	opts.Clock = clockwork.NewFakeClockAt(now.Add(3 * time.Hour))
	opts.VerifyCentral = centralHook(pki)
	var handled []command.Command
	opts.Commands = func(_ context.Context, c command.Command) (string, error) {
		handled = append(handled, c)
		return "locked", nil
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	carlURI := "spiffe://" + certstest.MiniTrustDomain + "/approver/security/carl"
	carl := pki.IssueFor(t, "carl", carlURI, now.Add(5*time.Minute), now.Add(time.Hour))
	signed, err := command.SignTo(carl.Key, carl.Chain, command.To{Site: "icu"}, command.Lock,
		[]string{"spiffe://hospital.example/vendor/acme/*", "72h", "incident 9"}, now.Add(10*time.Minute), 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	central := pki.Issue(t, "central", centralID)
	endorsed, err := command.Endorse(signed, central.Key, central.Chain, now.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	reply := func(data []byte) *wire.Reply {
		t.Helper()
		p.rejects = front.Folder{Window: rejectWindow}
		before := p.Stats().Outbox.NextSeq
		p.handleCommand(context.Background(), data)
		recs, err := p.ob.Peek(1000, func(seq uint64) bool { return seq < before })
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Kind == string(envelope.KindReply) {
				var rep wire.Reply
				if err := envelope.Unmarshal(r.Body, &rep); err != nil {
					t.Fatal(err)
				}
				return &rep
			}
		}
		t.Fatal("no reply queued")
		return nil
	}
	if r := reply(signed); r.Accepted || len(handled) != 0 {
		t.Fatalf("the lock as signed, after its signer expired: %+v", r)
	}
	if r := reply(endorsed); !r.Accepted || r.Approver != carlURI || len(handled) != 1 || handled[0].Name != command.Lock {
		t.Fatalf("the endorsed lock: %+v, handled %v", r, handled)
	}
}
