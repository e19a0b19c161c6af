package access

import (
	"slices"
	"strings"
	"testing"
)

// TestRetireDevice: RetireDevice revokes the device's open grants and cuts
// their sessions; a retired device refuses vendors with code retired.
func TestRetireDevice(t *testing.T) {
	e := newEnv(t)
	id, c := approveTunnel(e, "pump-07:23")
	defer c.Close()
	system := Actor{Kind: "system", Via: "config"}
	if _, err := e.b.RetireDevice("pump-07", Actor{}); err != ErrBadActor {
		t.Errorf("invalid actor: %v", err)
	}
	ids, err := e.b.RetireDevice("pump-07", system)
	if err != nil || !slices.Contains(ids, id) {
		t.Fatalf("RetireDevice = %v, %v; want %s", ids, err, id)
	}
	waitCut(t, c)
	ev := e.ev.wait(t, EvRevoke, func(ev Event) bool { return ev.Grant == id })
	if ev.Reason != "device retired" || ev.Actor == nil || ev.Actor.String() != "system:config" {
		t.Errorf("revoke event %+v", ev)
	}
	devs := testDevices()
	for i := range devs {
		if devs[i].ID == "pump-07" {
			devs[i].Retired, devs[i].ReplacedBy = true, "pump-09"
		}
	}
	if err := e.b.SetDevices(devs); err != nil {
		t.Fatal(err)
	}
	re := e.refused(e.jo, "pump-07:23")
	if re.Code != CodeRetired || !strings.Contains(re.Reason, "replaced by pump-09") {
		t.Errorf("refusal %+v", re)
	}
	// Nothing left to revoke the second time.
	if ids, _ := e.b.RetireDevice("pump-07", system); len(ids) != 0 {
		t.Errorf("second RetireDevice revoked %v", ids)
	}
}
