package access

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestActorString(t *testing.T) {
	for _, c := range []struct {
		a    Actor
		want string
	}{
		{Actor{Kind: KindLocal, Via: "button", UID: -1}, "local:button"},
		{Actor{Kind: KindLocal, Via: "admin", UID: 0}, "local:uid=0"},
		{central, "central:spiffe://hospital.example/approver/biomed/ann"},
		{Actor{Kind: KindSystem, Via: "expiry"}, "system:expiry"},
		{Actor{Kind: KindSystem}, "system"},
	} {
		if got := c.a.String(); got != c.want {
			t.Errorf("%+v: %q want %q", c.a, got, c.want)
		}
	}
}

func TestParseVendorURI(t *testing.T) {
	v, err := ParseVendorURI(mustURL(joURI))
	if err != nil || v.Org != "acme-medical" || v.Person != "jo" || v.URI != joURI {
		t.Fatalf("%+v %v", v, err)
	}
	for _, bad := range []string{"https://hospital.example/vendor/a/b", "spiffe://td/svc/pump-server", "spiffe://td/vendor/a", "spiffe://td/vendor//b", "spiffe://td/vendor/a/b/c", "spiffe:///vendor/a/b"} {
		u, _ := url.Parse(bad)
		if _, err := ParseVendorURI(u); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, err := ParseVendorURI(nil); err == nil {
		t.Error("nil accepted")
	}
}

// The JSON of Snapshot is the stable contract of `wardgate grant list --json`.
func TestSnapshotJSON(t *testing.T) {
	e := newEnv(t)
	id := e.request(e.jo, "pump-07:23")
	if _, err := e.auth.AddLock("spiffe://"+td+"/vendor/x/y", time.Time{}, "r", local); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(e.b.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "requests", "grants", "recent", "sessions", "locks", "tamper", "led"} {
		if _, ok := m[k]; !ok {
			t.Errorf("snapshot JSON lacks %q: %s", k, data)
		}
	}
	for _, want := range []string{`"id":"` + id + `"`, `"state":"pending"`, `"policy":["local"]`, `"ports":[23]`, `"identity":"spiffe://` + td + `/vendor/x/y"`, `"grants":[]`, `"led":{"pending":true,"live":false}`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("snapshot JSON lacks %s: %s", want, data)
		}
	}
}
