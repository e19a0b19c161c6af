package wire

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/wardgate/wardgate/wire/envelope"
)

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func sampleInventory() Inventory {
	return Inventory{Devices: []Device{{
		ID: "pump-07", Kind: "infusion-pump", Manufacturer: "Acme Medical", Model: "AP-200", Serial: "AP2-0042",
		Firmware: "3.1.4", Owner: "clinical-engineering/icu", Location: "ICU-3 bed 12", Link: "tcp",
		VendorOrg: "acme-medical", VendorPorts: []int{23, 8080}, Approval: []string{"local"},
		Accounts: []Account{
			{ID: "acme-svc", Type: "shared-password", Owner: "clinical-engineering/icu", Vendor: "acme-medical",
				RotateEvery: 90 * 24 * time.Hour, LastRotated: day("2026-09-01")},
			{ID: "fresh", Type: "api-key", Owner: "it/ops", RotateEvery: 90 * 24 * time.Hour, LastRotated: day("2026-11-01")},
		},
		Exceptions: []Exception{
			{ID: "EX-2026-014", Control: "PR.PS-02", Reason: "vendor has not validated OS patches",
				Compensating: []string{"segmentation"}, ApprovedBy: "ciso/jdoe", Expires: day("2026-12-15")},
			{ID: "EX-2026-001", Control: "PR.AA-01", Reason: "shared account", ApprovedBy: "ciso/jdoe", Expires: day("2026-11-01")},
			{ID: "EX-2027-002", Control: "PR.DS-01", Reason: "plaintext", ApprovedBy: "ciso/jdoe", Expires: day("2027-06-01")},
		},
	}}}
}

func sampleMetrics() Metrics {
	temp := 48.5
	return Metrics{
		Devices: []DeviceMetrics{
			{ID: "pump-07", BytesIn: 123456, BytesOut: 65432, Connections: 12, HandshakeFailures: 1, AuthFailures: 2, LinkUp: true},
			{ID: "monitor-3", BytesIn: 9876543, BytesOut: 12345, Connections: 3, LinkUp: false},
		},
		CPUPercent: 12.5, MemoryUsedBytes: 412 << 20, MemoryTotalBytes: 1 << 30,
		DiskUsedBytes: 3 << 30, DiskTotalBytes: 16 << 30, TemperatureC: &temp,
		CertExpiresIn: 3 * time.Hour, OutboxDepth: 17, OutboxAge: 42 * time.Second,
		ListeningPorts: []int{8443, 7001, 7002},
	}
}

func TestAccountability(t *testing.T) {
	now := day("2026-11-28")
	evs := Accountability(sampleInventory(), now)
	got := map[string]string{}
	for _, e := range evs {
		id := e.Attrs["account"] + e.Attrs["exception"]
		got[id] = e.Kind
		if e.Attrs["owner"] == "" {
			t.Errorf("%s without owner", e.Kind)
		}
	}
	want := map[string]string{
		"acme-svc":    EventRotationOverdue,   // 2026-09-01 + 90d = 2026-11-30? no: overdue only after
		"EX-2026-014": EventExceptionExpiring, // 17 days left
		"EX-2026-001": EventExceptionExpired,
	}
	// 2026-09-01 + 90 days = 2026-11-30: not overdue on 2026-11-28.
	delete(want, "acme-svc")
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	later := Accountability(sampleInventory(), day("2026-12-05"))
	found := false
	for _, e := range later {
		if e.Kind == EventRotationOverdue && e.Attrs["account"] == "acme-svc" && e.Attrs["overdue_days"] == "5" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no overdue rotation on 2026-12-05: %+v", later)
	}
}

func TestBodiesRoundTrip(t *testing.T) {
	inv, err := InventoryBody(sampleInventory())
	if err != nil {
		t.Fatal(err)
	}
	v, err := DecodeBody(envelope.KindInventory, inv)
	if err != nil {
		t.Fatal(err)
	}
	dev := v.(map[string]any)["devices"].([]any)[0].(map[string]any)
	acc := dev["accounts"].([]any)[0].(map[string]any)
	if dev["owner"] != "clinical-engineering/icu" || acc["last_rotated"] != "2026-09-01" || acc["rotate_every_s"] != uint64(90*24*3600) {
		t.Fatalf("inventory %v", dev)
	}
	ev, err := EventBody(Event{Kind: "x", Attrs: map[string]string{"long": string(make([]byte, 2000))}})
	if err != nil {
		t.Fatal(err)
	}
	v, _ = DecodeBody(envelope.KindEvent, ev)
	if m := v.(map[string]any); m["severity"] != "info" || len(m["attrs"].(map[string]any)["long"].(string)) != MaxAttrLen {
		t.Fatalf("event %v", v)
	}
	if _, err := EventBody(Event{}); err == nil {
		t.Fatal("event without kind accepted")
	}
}

func TestMetricsPackRoundTrip(t *testing.T) {
	now := time.Unix(1764331200, 0)
	b, err := envelope.EncodePack(MetricsPack(sampleMetrics(), now))
	if err != nil {
		t.Fatal(err)
	}
	v, err := DecodeBody(envelope.KindMetrics, b)
	if err != nil {
		t.Fatal(err)
	}
	recs := v.([]map[string]any)
	byName := map[string]map[string]any{}
	for _, r := range recs {
		byName[r["n"].(string)] = r
	}
	if byName["pump-07/rx"]["v"] != 123456.0 || byName["monitor-3/lnk"]["vb"] != false ||
		byName["cpu"]["t"] != 1764331200.0 || byName["tmp"]["v"] != 48.5 || byName["cttl"]["v"] != 10800.0 {
		t.Fatalf("records %v", byName)
	}
	senmlJSON, _ := json.Marshal(MetricsPack(sampleMetrics(), now))
	structJSON, _ := json.Marshal(sampleMetrics())
	t.Logf("metrics body: SenML-CBOR %d bytes, SenML-JSON %d bytes (%.2fx), struct JSON %d bytes (%.2fx)",
		len(b), len(senmlJSON), float64(len(b))/float64(len(senmlJSON)), len(structJSON), float64(len(b))/float64(len(structJSON)))
	if float64(len(b)) > 0.5*float64(len(structJSON)) {
		t.Errorf("SenML-CBOR %d bytes > 0.5 x JSON %d bytes", len(b), len(structJSON))
	}
}
