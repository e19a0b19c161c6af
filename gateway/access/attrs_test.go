package access

import (
	"testing"
	"time"
)

// TestEventAttrs: attributes are typed values flattened once; big byte
// counts stay integers (a JSON round trip used to print 1.048576e+06).
func TestEventAttrs(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	e := Event{Kind: EvSessionEnd, Session: "ABC-1", Vendor: "spiffe://td/vendor/a/b", Device: "pump-07", Port: 23,
		Ports: []int{23, 8080}, Actor: &Actor{Kind: KindLocal, Via: "admin", UID: 1000, Name: "jdoe"},
		ToDevice: 1 << 20, FromDev: 0, Duration: 1500 * time.Millisecond, Until: at, Count: 3}
	got := e.Attrs()
	want := map[string]string{"session": "ABC-1", "vendor": "spiffe://td/vendor/a/b", "device": "pump-07", "port": "23",
		"ports": "23,8080", "actor": "local:jdoe(uid=1000)", "to_device": "1048576", "from_device": "0", "duration": "1.5s",
		"until": "2026-12-01T09:00:00Z", "count": "3"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("attrs %v, want exactly %v", got, want)
	}
	if (Event{Kind: EvRefused}).Severity() != "warning" || (Event{Kind: EvApprove}).Severity() != "info" {
		t.Error("severity")
	}
}
