package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/gateway/front"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
)

// TestCentralMayOnlyResync: central's own identity (svc/central) gets a
// rebirth and an inventory answered, and nothing else; a gateway identity
// gets nothing.
func TestCentralMayOnlyResync(t *testing.T) {
	pki := certstest.NewMini(t)
	gw := pki.Gateway(t, "gw-test")
	opts := gatewayOptions(t, pki, "ssl://127.0.0.1:1", "gw-test", gw, t.TempDir())
	opts.VerifyCentral = centralHook(pki)
	opts.Inventory = func() wire.Inventory { return wire.Inventory{Devices: []wire.Device{{ID: "pump-07", Owner: "ce"}}} }
	var handled []string
	opts.Commands = func(_ context.Context, c command.Command) (string, error) {
		handled = append(handled, c.Name)
		return "done", nil
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	central := pki.Issue(t, "central", centralID)
	other := pki.Issue(t, "other", "spiffe://"+certstest.MiniTrustDomain+"/svc/other")
	cases := []struct {
		name     string
		signer   *certstest.Identity
		cmd      string
		args     []string
		accepted bool
	}{
		{"central rebirth", central, command.Rebirth, nil, true},
		{"central inventory", central, command.InventoryNow, nil, true},
		{"central lock refused", central, command.Lock, []string{"spiffe://hospital.example/vendor/acme/bob"}, false},
		{"central approve refused", central, command.Approve, []string{"g1"}, false},
		{"other service rebirth refused", other, command.Rebirth, nil, false},
		{"gateway rebirth refused", gw, command.Rebirth, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := p.Stats().Outbox.NextSeq
			// Each case is answered: forget earlier rejections, which are
			// otherwise folded per reason (see TestRejectedCommandsAreFolded).
			p.rejects = front.Folder{Window: rejectWindow}
			data, err := command.Sign(tc.signer.Key, tc.signer.Chain, "gw-test", tc.cmd, tc.args, time.Now(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			p.handleCommand(context.Background(), data)
			recs, err := p.ob.Peek(1000, func(seq uint64) bool { return seq < before })
			if err != nil {
				t.Fatal(err)
			}
			var reply *wire.Reply
			kinds := map[string]int{}
			for _, r := range recs {
				kinds[r.Kind]++
				if r.Kind == string(envelope.KindReply) {
					reply = new(wire.Reply)
					if err := envelope.Unmarshal(r.Body, reply); err != nil {
						t.Fatal(err)
					}
				}
			}
			if reply == nil || reply.Accepted != tc.accepted {
				t.Fatalf("reply %+v, want accepted=%v", reply, tc.accepted)
			}
			if tc.accepted && reply.Approver != centralID {
				t.Fatalf("approver %q", reply.Approver)
			}
			switch {
			case tc.accepted && tc.cmd == command.Rebirth && kinds["birth"] != 1:
				t.Fatalf("no birth queued: %v", kinds)
			case tc.accepted && tc.cmd == command.InventoryNow && kinds["inventory"] != 1:
				t.Fatalf("no inventory queued: %v", kinds)
			case !tc.accepted && (kinds["birth"] > 0 || kinds["inventory"] > 0):
				t.Fatalf("refused command queued %v", kinds)
			}
		})
	}
	if len(handled) != 0 {
		t.Fatalf("central reached the agent's command handler: %v", handled)
	}
}
