package receipt

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/envelope"
)

func TestVerify(t *testing.T) {
	pki := certstest.NewMini(t)
	central := pki.Issue(t, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	gw := pki.Gateway(t, "gw-1")
	head := bytes.Repeat([]byte{7}, 32)
	r := Receipt{Gateway: "gw-1", Session: "S-1", Head: head, Size: 100, Stored: time.Now().UnixMilli()}
	good, err := Sign(central.Key, central.Chain, r)
	if err != nil {
		t.Fatal(err)
	}
	byGateway, _ := Sign(gw.Key, gw.Chain, r)
	v := envelope.RootsVerifier(pki.Roots())
	now := time.Now()
	for _, c := range []struct {
		name    string
		data    []byte
		gw, ses string
		head    []byte
		size    int64
		ok      bool
	}{
		{"binds all", good, "gw-1", "S-1", head, 100, true},
		{"other gateway", good, "gw-2", "S-1", head, 100, false},
		{"other session", good, "gw-1", "S-2", head, 100, false},
		{"other head", good, "gw-1", "S-1", bytes.Repeat([]byte{8}, 32), 100, false},
		{"other size", good, "gw-1", "S-1", head, 99, false},
		{"signed by a gateway", byGateway, "gw-1", "S-1", head, 100, false},
		{"garbage", []byte("ok"), "gw-1", "S-1", head, 100, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Verify(c.data, v, now, c.gw, c.ses, c.head, c.size)
			if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	pki := certstest.NewMini(f)
	central := pki.Issue(f, "central", "spiffe://"+certstest.MiniTrustDomain+"/svc/central")
	good, _ := Sign(central.Key, central.Chain, Receipt{Gateway: "gw-1", Session: "S-1", Head: make([]byte, 32), Size: 1})
	f.Add(good)
	v := envelope.RootsVerifier(pki.Roots())
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = Verify(data, v, time.Now(), "gw-1", "S-1", make([]byte, 32), 1)
	})
}
