package command

import (
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

// approverHook is what the lead wires to the identity package: a chain to
// the trust bundle whose leaf is spiffe://TD/approver/....
func approverHook(pki *certstest.MiniPKI) VerifyApprover {
	roots := envelope.RootsVerifier(pki.Roots())
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		id, err := roots(chain, now)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(id, "spiffe://"+certstest.MiniTrustDomain+"/approver/") {
			return "", errors.New("not an approver identity")
		}
		return id, nil
	}
}

func openStore(t *testing.T, path string) (*NonceStore, *bbolt.DB) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := NewNonceStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func TestVerify(t *testing.T) {
	pki := certstest.NewMini(t)
	other := certstest.NewMini(t)
	appr := pki.Approver(t, "security", "jdoe")
	strangerAppr := other.Approver(t, "security", "mallory")
	gw := pki.Gateway(t, "gw-test")
	now := time.Now() // the test certificates are issued now
	path := filepath.Join(t.TempDir(), "n.db")
	store, db := openStore(t, path)
	hook := approverHook(pki)

	sign := func(id *certstest.Identity, gwID, name string, args []string, at time.Time, ttl time.Duration) []byte {
		t.Helper()
		b, err := Sign(id.Key, id.Chain, gwID, name, args, at, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A command built by hand, bypassing Sign's own checks.
	raw := func(id *certstest.Identity, p Payload) []byte {
		b, _ := envelope.Marshal(&p)
		m, err := envelope.Sign(id.Key, id.Chain, b)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	nonce := []byte("0123456789abcdef")

	good := sign(appr, "gw-test", Lock, []string{"spiffe://hospital.example/vendor/acme/bob", "1h", "suspicious"}, now, time.Minute)
	c, err := Verify(good, "gw-test", now, hook, store)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != Lock || len(c.Args) != 3 || c.Approver != "spiffe://hospital.example/approver/security/jdoe" {
		t.Fatalf("command %+v", c)
	}

	unsignedPayload, _ := envelope.Marshal(&Payload{Gateway: "gw-test", Name: Rebirth, Args: []string{}, Nonce: nonce, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli()})
	tampered := sign(appr, "gw-test", Approve, []string{"G-1"}, now, time.Minute)
	tampered[len(tampered)-1] ^= 1

	cases := []struct {
		name string
		msg  []byte
		at   time.Time
		want error
	}{
		{"unsigned", unsignedPayload, now, ErrUnsigned},
		{"bad signature", tampered, now, ErrUnsigned},
		{"garbage", []byte("approve G-1"), now, ErrUnsigned},
		{"gateway certificate", sign(gw, "gw-test", Approve, []string{"G-1"}, now, time.Minute), now, ErrNotApprover},
		{"approver of another CA", sign(strangerAppr, "gw-test", Approve, []string{"G-1"}, now, time.Minute), now, ErrNotApprover},
		{"other gateway", sign(appr, "gw-other", Approve, []string{"G-1"}, now, time.Minute), now, ErrOtherGateway},
		{"expired", sign(appr, "gw-test", Approve, []string{"G-1"}, now.Add(-2*time.Minute), time.Minute), now, ErrExpired},
		{"exp too far", raw(appr, Payload{Gateway: "gw-test", Name: Rebirth, Args: []string{}, Nonce: nonce, IssuedAt: now.UnixMilli(), Expires: now.Add(10 * time.Minute).UnixMilli()}), now, ErrTooLong},
		{"short nonce", raw(appr, Payload{Gateway: "gw-test", Name: Rebirth, Args: []string{}, Nonce: nonce[:8], IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli()}), now, ErrMalformed},
		{"unknown command", raw(appr, Payload{Gateway: "gw-test", Name: "format-disk", Args: []string{}, Nonce: nonce, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli()}), now, ErrUnknown},
		{"wrong arg count", raw(appr, Payload{Gateway: "gw-test", Name: Approve, Args: []string{}, Nonce: nonce, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli()}), now, ErrMalformed},
		{"approve with three args", raw(appr, Payload{Gateway: "gw-test", Name: Approve, Args: []string{"G-1", "v", "d"}, Nonce: nonce, IssuedAt: now.UnixMilli(), Expires: now.Add(time.Minute).UnixMilli()}), now, ErrMalformed},
		{"replayed", good, now.Add(time.Second), ErrReplay},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.msg, "gw-test", tc.at, hook, store)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}

	// Replay after a restart: the nonce survives in the file.
	db.Close()
	store2, _ := openStore(t, path)
	if _, err := Verify(good, "gw-test", now.Add(2*time.Second), hook, store2); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after restart: %v", err)
	}
	// After expiry the command is refused as expired, and its nonce is purged.
	if _, err := Verify(good, "gw-test", now.Add(2*time.Minute), hook, store2); !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: %v", err)
	}

	if _, err := Sign(appr.Key, appr.Chain, "gw-test", Rebirth, nil, now, 6*time.Minute); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Sign ttl 6m: %v", err)
	}
	if _, err := Sign(appr.Key, appr.Chain, "gw-test", "nope", nil, now, time.Minute); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Sign unknown: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	pki := certstest.NewMini(f)
	appr := pki.Approver(f, "security", "jdoe")
	now := time.Unix(1700000000, 0)
	for _, name := range []string{Approve, Rebirth, Lock} {
		args := []string{"x"}
		if name == Rebirth {
			args = nil
		}
		b, err := Sign(appr.Key, appr.Chain, "gw-test", name, args, now, time.Minute)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if name == Lock {
			central := pki.Issue(f, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
			e, err := Endorse(b, central.Key, central.Chain, now)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(e)
		}
	}
	f.Add([]byte{0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0, 0x41, 0xa0, 0x40})
	f.Add([]byte{0x82, 0x40, 0x40})
	hook := approverHook(pki)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, p, err := Decode(data)
		if err == nil && (s == nil || p == nil) {
			t.Fatal("nil result without error")
		}
		if p != nil {
			_ = p.check()
		}
		if s != nil {
			_ = s.VerifySignature()
			if len(s.Chain) > 0 {
				_, _ = hook(s.Chain, now)
			}
		}
	})
}

func TestParseApprove(t *testing.T) {
	vendor := "spiffe://hospital.example/vendor/acme/jo"
	a, err := ParseApprove(ApproveArgs("G-1", vendor, "pump-07", []int{23, 8080}))
	if err != nil || !a.Bound || a.Grant != "G-1" || a.Vendor != vendor || a.Device != "pump-07" || len(a.Ports) != 2 || a.Ports[1] != 8080 {
		t.Fatalf("%+v %v", a, err)
	}
	if a, err := ParseApprove([]string{"G-1"}); err != nil || a.Bound || a.Grant != "G-1" {
		t.Fatalf("short form: %+v %v", a, err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"none", nil},
		{"two", []string{"G-1", vendor}},
		{"three", []string{"G-1", vendor, "pump-07"}},
		{"empty id", []string{""}},
		{"empty device", []string{"G-1", vendor, "", "23"}},
		{"bad port", []string{"G-1", vendor, "pump-07", "23,telnet"}},
		{"port zero", []string{"G-1", vendor, "pump-07", "0"}},
		{"port too large", []string{"G-1", vendor, "pump-07", "70000"}},
		{"empty ports", []string{"G-1", vendor, "pump-07", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseApprove(tc.args); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseApprove(%q) = %v", tc.args, err)
			}
		})
	}
}

func FuzzParseApprove(f *testing.F) {
	f.Add("G-1", "spiffe://hospital.example/vendor/acme/jo", "pump-07", "23,8080")
	f.Add("", "", "", ",")
	f.Fuzz(func(t *testing.T, id, vendor, device, ports string) {
		a, err := ParseApprove([]string{id, vendor, device, ports})
		if err == nil && (!a.Bound || len(a.Ports) == 0) {
			t.Fatalf("accepted without ports: %+v", a)
		}
	})
}
