package web

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/wardgate/wardgate/central/commands"
	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/command"
	"github.com/wardgate/wardgate/wire/envelope"
	"github.com/wardgate/wardgate/wire/lockset"
)

func post(t *testing.T, h http.Handler, path string, signed []byte, note string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(SubmitRequest{Signed: base64.StdEncoding.EncodeToString(signed), Note: note})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", path, strings.NewReader(string(body))))
	return rec.Code, rec.Body.String()
}

// TestCommandsAPI: submit, refuse, list and show commands and lock sets,
// and render the commands pages.
func TestCommandsAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		st := seed(t, dsn)
		clock := clockwork.NewFakeClockAt(time.Now())
		pki := certstest.NewMini(t)
		ann, bob := pki.Approver(t, "security", "ann"), pki.Approver(t, "security", "bob")
		v := certs.NewVerifier(certs.NewBundle(pki.CA.Root), clock)
		svc, err := commands.New(commands.Options{Store: st, TrustDomain: "hospital.example", Clock: clock,
			Approver: func(chain []*x509.Certificate, _ time.Time) (string, error) {
				id, err := v.Verify(chain, ApproverPolicy("hospital.example", 48*time.Hour))
				return id.URI, err
			}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{Store: st, TrustDomain: "hospital.example", Clock: clock, Commands: svc,
			User: func(*http.Request) (string, error) { return user, nil }})
		if err != nil {
			t.Fatal(err)
		}
		h := s.Handler()
		sign := func(p command.Payload) []byte {
			p.Nonce = make([]byte, 16)
			_, _ = rand.Read(p.Nonce)
			p.IssuedAt, p.Expires = clock.Now().UnixMilli(), clock.Now().Add(time.Minute).UnixMilli()
			b, _ := envelope.Marshal(&p)
			out, err := envelope.Sign(ann.Key, ann.Chain, b)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		code, body := post(t, h, "/api/v1/commands", sign(command.Payload{Site: "st-example", Name: command.Approve, Args: []string{"G-1"}}), "")
		if code != 400 || !strings.Contains(body, "exactly one gateway") {
			t.Fatalf("approve to a site: %d %s", code, body)
		}
		code, body = post(t, h, "/api/v1/commands", sign(command.Payload{Site: "st-example", Name: command.Deny, Args: []string{"G-1"}}), "why")
		if code != 201 {
			t.Fatalf("deny to a site: %d %s", code, body)
		}
		var created struct{ Command store.Command }
		_ = json.Unmarshal([]byte(body), &created)
		if created.Command.ID == "" || len(created.Command.Targets) != 1 || created.Command.Targets[0].Gateway != "gw-icu3-12" || created.Command.Signed != nil {
			t.Fatalf("created %s", body)
		}
		code, body = post(t, h, "/api/v1/commands", []byte{}, "")
		if code != 400 {
			t.Fatalf("empty: %d %s", code, body)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/commands", strings.NewReader(`{"signed":"AA==","extra":1}`)))
		if rec.Code != 400 {
			t.Fatalf("unknown field: %d", rec.Code)
		}
		var list struct{ Commands []store.Command }
		getJSON(t, h, "/api/v1/commands", &list)
		if len(list.Commands) != 1 || list.Commands[0].States[store.TargetQueued]+list.Commands[0].States[store.TargetDelivered] != 1 {
			t.Fatalf("list %+v", list)
		}
		var one struct{ Command store.Command }
		getJSON(t, h, "/api/v1/commands/"+created.Command.ID, &one)
		if one.Command.Note != "why" || len(one.Command.Targets) != 1 || len(one.Command.Signed) == 0 {
			t.Fatalf("show %+v", one)
		}
		if code, _, _ := get(t, h, "/api/v1/commands/nope"); code != 404 {
			t.Fatalf("unknown command: %d", code)
		}
		if code, _, _ := get(t, h, "/api/v1/commands?limit=0"); code != 400 {
			t.Fatalf("bad limit: %d", code)
		}

		set := &lockset.Set{TrustDomain: "hospital.example", Version: 1, IssuedAt: clock.Now().UnixMilli(), Expires: clock.Now().Add(time.Hour).UnixMilli(),
			Scope: lockset.ScopeFleet, Locks: []lockset.Lock{{Target: "spiffe://hospital.example/vendor/acme/*"}},
			Approvers: []string{user, "spiffe://hospital.example/approver/security/bob"}}
		first, err := lockset.Sign(set, lockset.Signer{Key: ann.Key, Chain: ann.Chain})
		if err != nil {
			t.Fatal(err)
		}
		if code, body := post(t, h, "/api/v1/locksets", first, ""); code != 400 {
			t.Fatalf("one signature of two: %d %s", code, body)
		}
		both, _ := lockset.Cosign(first, lockset.Signer{Key: bob.Key, Chain: bob.Chain})
		if code, body := post(t, h, "/api/v1/locksets", both, ""); code != 201 {
			t.Fatalf("lock set: %d %s", code, body)
		}
		if code, body := post(t, h, "/api/v1/locksets", both, ""); code != 409 {
			t.Fatalf("same version: %d %s", code, body)
		}
		var sets struct{ Locksets []commands.LockSetView }
		getJSON(t, h, "/api/v1/locksets", &sets)
		if len(sets.Locksets) != 1 || sets.Locksets[0].Behind != 1 || sets.Locksets[0].Signed != nil {
			t.Fatalf("lock sets %+v", sets)
		}
		var fleet struct{ Lockset commands.LockSetView }
		getJSON(t, h, "/api/v1/locksets/fleet", &fleet)
		if fleet.Lockset.Version != 1 || len(fleet.Lockset.Gateways) != 1 {
			t.Fatalf("fleet %+v", fleet)
		}
		if code, _, _ := get(t, h, "/api/v1/locksets/site/none"); code != 404 {
			t.Fatalf("unknown scope: %d", code)
		}
		code, page, hdr := get(t, h, "/commands")
		if code != 200 || !strings.Contains(page, created.Command.ID) || !strings.Contains(page, "fleet version 1") ||
			!strings.Contains(hdr.Get("Content-Security-Policy"), "nonce-") {
			t.Fatalf("commands page %d:\n%s", code, page)
		}
		code, page, _ = get(t, h, "/commands/"+created.Command.ID)
		if code != 200 || !strings.Contains(page, "gw-icu3-12") || !strings.Contains(page, "deny") {
			t.Fatalf("command page %d:\n%s", code, page)
		}
		if code, _, _ := get(t, h, "/commands/nope"); code != 404 {
			t.Fatalf("unknown command page: %d", code)
		}
	})
}
