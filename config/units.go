package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// scalar is implemented by config types that parse themselves from one YAML
// scalar. The error is phrased for an operator: it says what is accepted.
type scalar interface {
	parseScalar(s string) error
}

// Duration is a time.Duration written as Go durations ("90s", "1h30m") or
// with a day suffix ("90d"). The zero value means "not set".
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) parseScalar(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String formats the duration the way it is written in the file.
func (d Duration) String() string {
	v := time.Duration(d)
	if v != 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

// MarshalText lets JSON and YAML encoders print durations as written.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ParseDuration parses "90d", "12h", "30m", "45s" and any Go duration. Days
// may not be combined with other units. Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration; write it like 30s, 15m, 12h or 90d")
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration; write whole days like 90d, or use h, m, s", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like 30s, 15m, 12h or 90d", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("%q is negative; durations must be positive", s)
	}
	return v, nil
}

// Size is a byte count written as a plain number or with a unit: B, KB, MB,
// GB (powers of 1000) or KiB, MiB, GiB (powers of 1024).
type Size int64

func (z *Size) parseScalar(s string) error {
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*z = Size(v)
	return nil
}

// String formats the size with the largest binary unit that divides it.
func (z Size) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if z != 0 && int64(z)%u.n == 0 {
			return strconv.FormatInt(int64(z)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(z), 10) + "B"
}

// MarshalText prints sizes as written.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize parses "256MiB", "1GiB", "500MB", "4096".
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size; write it like 256MiB, 1GiB or 500MB", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// Date is a calendar day written as YYYY-MM-DD, read as midnight UTC.
type Date struct{ time.Time }

func (d *Date) parseScalar(s string) error {
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a date; write it as YYYY-MM-DD, e.g. 2026-09-01", s)
	}
	d.Time = t
	return nil
}

// String formats the date as YYYY-MM-DD, or "" when unset.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.Format(time.DateOnly)
}

// MarshalText prints dates as written.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Percent is a share written with a percent sign: "25%" or "12.5%". The
// value is in percent (25 means a quarter); the zero value means "not set".
type Percent float64

// Fraction returns the share as a fraction of one (25% is 0.25).
func (p Percent) Fraction() float64 { return float64(p) / 100 }

func (p *Percent) parseScalar(s string) error {
	v, err := ParsePercent(s)
	if err != nil {
		return err
	}
	*p = Percent(v)
	return nil
}

// String formats the percentage the way it is written in the file.
func (p Percent) String() string {
	return strconv.FormatFloat(float64(p), 'f', -1, 64) + "%"
}

// MarshalText prints percentages as written.
func (p Percent) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// ParsePercent parses "25%" or "12.5%" and returns the number of percent
// (25, 12.5). The percent sign is required so that 25 and 0.25 cannot be
// confused; values outside 0% to 100% are refused.
func ParsePercent(s string) (float64, error) {
	s = strings.TrimSpace(s)
	num, ok := strings.CutSuffix(s, "%")
	if !ok {
		return 0, fmt.Errorf("%q is not a percentage; write it with a percent sign, like 25%%", s)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a percentage; write it like 25%% or 12.5%%", s)
	}
	if v < 0 || v > 100 {
		return 0, fmt.Errorf("%q is outside 0%% to 100%%", s)
	}
	return v, nil
}
