package wire

import (
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// TestRetiredDeviceInventory: a retired device stays in the inventory,
// marked retired; its accounts are flagged for rotation or removal and its
// exceptions no longer report.
func TestRetiredDeviceInventory(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	inv := Inventory{SBOM: "ab12", Devices: []Device{{
		ID: "pump-07", Owner: "ce/icu", Retired: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), ReplacedBy: "pump-09",
		Accounts:   []Account{{ID: "svc", Type: "shared-password", Owner: "ce/icu", RotateEvery: time.Hour, LastRotated: now.AddDate(-1, 0, 0)}},
		Exceptions: []Exception{{ID: "EX-1", Expires: now.AddDate(0, 0, -1)}},
	}}}
	evs := Accountability(inv, now)
	if len(evs) != 1 || evs[0].Kind != EventAccountRetire || evs[0].Attrs["account"] != "svc" || evs[0].Attrs["replaced_by"] != "pump-09" {
		t.Fatalf("accountability of a retired device: %+v", evs)
	}
	body, err := InventoryBody(inv)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Devices []struct {
			ID         string `cbor:"id"`
			Retired    string `cbor:"retired"`
			ReplacedBy string `cbor:"replaced_by"`
		} `cbor:"devices"`
		SBOM string `cbor:"sbom_sha256"`
	}
	if err := cbor.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Devices) != 1 || got.Devices[0].Retired != "2026-11-01" || got.Devices[0].ReplacedBy != "pump-09" || got.SBOM != "ab12" {
		t.Errorf("inventory body %+v", got)
	}
}
