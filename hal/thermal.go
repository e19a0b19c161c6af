package hal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ThermalZone is one sysfs thermal zone reading.
type ThermalZone struct {
	Name    string  `json:"name"` // thermal_zone0
	Type    string  `json:"type"` // e.g. cpu-thermal
	Celsius float64 `json:"celsius"`
}

// ReadThermal reads every ROOT/class/thermal/thermal_zone*/temp; root ""
// means /sys. Zones that cannot be read are skipped; the error reports the
// first problem only when no zone could be read at all. A board without
// thermal zones returns no zones and no error.
func ReadThermal(root string) ([]ThermalZone, error) {
	if root == "" {
		root = "/sys"
	}
	dirs, err := filepath.Glob(filepath.Join(root, "class", "thermal", "thermal_zone*"))
	if err != nil {
		return nil, fmt.Errorf("hal: thermal zones under %s: %w (%w)", root, err, ErrThermal)
	}
	slices.Sort(dirs)
	var zones []ThermalZone
	var first error
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "temp"))
		var mc int64
		if err == nil {
			mc, err = ParseMilliCelsius(b)
		}
		if err != nil {
			if first == nil {
				first = fmt.Errorf("hal: thermal zone %s: %w", d, err)
			}
			continue
		}
		typ, _ := os.ReadFile(filepath.Join(d, "type"))
		zones = append(zones, ThermalZone{Name: filepath.Base(d), Type: strings.TrimSpace(string(typ)), Celsius: float64(mc) / 1000})
	}
	if len(zones) == 0 && first != nil {
		return nil, first
	}
	return zones, nil
}

// ParseMilliCelsius parses a sysfs temp value: a decimal integer in
// millidegrees Celsius with an optional trailing newline. Values outside
// -273150..1000000 (absolute zero to 1000 °C) are refused.
func ParseMilliCelsius(b []byte) (int64, error) {
	s := bytes.TrimSuffix(b, []byte("\n"))
	if len(s) == 0 || len(s) > 12 {
		return 0, fmt.Errorf("temperature %q: want millidegrees such as 48312 (%w)", trunc(b), ErrThermal)
	}
	v, err := strconv.ParseInt(string(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("temperature %q: want millidegrees such as 48312 (%w)", trunc(b), ErrThermal)
	}
	if v < -273150 || v > 1000000 {
		return 0, fmt.Errorf("temperature %d m°C is out of range (%w)", v, ErrThermal)
	}
	return v, nil
}

func trunc(b []byte) string {
	if len(b) > 16 {
		return string(b[:16]) + "..."
	}
	return string(b)
}
