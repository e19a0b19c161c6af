package wire

import (
	"reflect"
	"testing"
	"time"
)

func TestDecodeInventoryRoundTrip(t *testing.T) {
	day := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	inv := Inventory{SBOM: "ab12", Devices: []Device{{ID: "pump-07", Kind: "infusion-pump", Owner: "ce/icu", Link: "tcp", VendorOrg: "acme",
		VendorPorts: []int{23}, Approval: []string{"local"}, Retired: day, ReplacedBy: "pump-08",
		Accounts: []Account{{ID: "svc", Type: "shared-password", Owner: "ce/icu", RotateEvery: 90 * 24 * time.Hour, LastRotated: day}},
		Exceptions: []Exception{{ID: "EX-1", Control: "PR.PS-02", Reason: "r", Compensating: []string{"segmentation"}, ApprovedBy: "ciso/jdoe", Expires: day,
			Controls: []Control{{Name: "segmentation", InForce: true, Detail: "routed via eth1", Checked: day.Add(time.Hour)}}}}}}}
	b, err := InventoryBody(inv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeInventory(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, inv) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, inv)
	}
	if _, err := DecodeInventory([]byte{0xa1, 0x01}); err == nil {
		t.Fatal("garbage accepted")
	}
}

func FuzzDecodeInventory(f *testing.F) {
	b, _ := InventoryBody(Inventory{Devices: []Device{{ID: "d", Owner: "o"}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := DecodeInventory(data)
		if err != nil {
			return
		}
		if _, err := InventoryBody(inv); err != nil {
			t.Fatalf("decoded inventory does not encode: %v", err)
		}
	})
}
