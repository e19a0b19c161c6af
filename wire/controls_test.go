package wire

import (
	"testing"
	"time"

	"github.com/wardgate/wardgate/wire/envelope"
)

// TestInventoryControls: an exception's live controls go out in the
// inventory; an exception not checked yet has no controls key.
func TestInventoryControls(t *testing.T) {
	inv := sampleInventory()
	checked := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	inv.Devices[0].Exceptions[0].Controls = []Control{{Name: "segmentation", InForce: false, Detail: "forwarding on", Checked: checked}}
	b, err := InventoryBody(inv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := DecodeBody(envelope.KindInventory, b)
	if err != nil {
		t.Fatal(err)
	}
	exs := v.(map[string]any)["devices"].([]any)[0].(map[string]any)["exceptions"].([]any)
	ctl := exs[0].(map[string]any)["controls"].([]any)[0].(map[string]any)
	if ctl["name"] != "segmentation" || ctl["in_force"] != false || ctl["detail"] != "forwarding on" || ctl["checked"] != "2026-12-01T10:00:00Z" {
		t.Fatalf("control %v", ctl)
	}
	if _, ok := exs[1].(map[string]any)["controls"]; ok {
		t.Fatalf("unchecked exception has controls: %v", exs[1])
	}
}
