package hal_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wardgate/wardgate/hal"
)

func writeZone(t *testing.T, root, zone, typ, temp string) {
	t.Helper()
	d := filepath.Join(root, "class", "thermal", zone)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if typ != "" {
		if err := os.WriteFile(filepath.Join(d, "type"), []byte(typ+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if temp != "" {
		if err := os.WriteFile(filepath.Join(d, "temp"), []byte(temp), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadThermal(t *testing.T) {
	root := t.TempDir()
	writeZone(t, root, "thermal_zone0", "cpu-thermal", "48312\n")
	writeZone(t, root, "thermal_zone1", "gpu-thermal", "-1500\n")
	writeZone(t, root, "thermal_zone2", "broken", "n/a\n")
	writeZone(t, root, "thermal_zone3", "", "") // no temp file
	zones, err := hal.ReadThermal(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []hal.ThermalZone{{Name: "thermal_zone0", Type: "cpu-thermal", Celsius: 48.312}, {Name: "thermal_zone1", Type: "gpu-thermal", Celsius: -1.5}}
	if len(zones) != len(want) {
		t.Fatalf("zones %+v", zones)
	}
	for i := range want {
		if zones[i] != want[i] {
			t.Errorf("zone %d = %+v, want %+v", i, zones[i], want[i])
		}
	}

	empty, err := hal.ReadThermal(t.TempDir())
	if err != nil || len(empty) != 0 {
		t.Errorf("no zones: %v %v", empty, err)
	}
	bad := t.TempDir()
	writeZone(t, bad, "thermal_zone0", "cpu", "hot\n")
	if _, err := hal.ReadThermal(bad); !errors.Is(err, hal.ErrThermal) {
		t.Errorf("only broken zones: %v", err)
	}
}

func TestParseMilliCelsius(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"48312\n", 48312, true},
		{"48312", 48312, true},
		{"0\n", 0, true},
		{"-273150\n", -273150, true},
		{"1000000", 1000000, true},
		{"-273151", 0, false},
		{"1000001", 0, false},
		{"", 0, false},
		{"\n", 0, false},
		{"48.3\n", 0, false},
		{" 48312\n", 0, false},
		{"48312\n\n", 0, false},
		{"99999999999999999999", 0, false},
		{"+5", 5, true},
	}
	for _, c := range cases {
		got, err := hal.ParseMilliCelsius([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseMilliCelsius(%q) = %d, %v; want %d ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && !errors.Is(err, hal.ErrThermal) {
			t.Errorf("%q: error %v does not wrap ErrThermal", c.in, err)
		}
	}
}

func FuzzParseMilliCelsius(f *testing.F) {
	for _, s := range []string{"48312\n", "-1500", "", "\n", "abc", "1e5", "-273150", "9223372036854775807", "\xff\xfe"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := hal.ParseMilliCelsius(b)
		if err != nil {
			if !errors.Is(err, hal.ErrThermal) || v != 0 {
				t.Fatalf("error %v with value %d", err, v)
			}
			return
		}
		if v < -273150 || v > 1000000 {
			t.Fatalf("out of range value %d accepted", v)
		}
	})
}
