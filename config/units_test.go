package config

import "testing"

func TestPercent(t *testing.T) {
	good := map[string]Percent{"25%": 25, "12.5%": 12.5, " 90 % ": 90, "0%": 0, "100%": 100}
	for in, want := range good {
		var p Percent
		if err := p.parseScalar(in); err != nil || p != want {
			t.Errorf("parse %q = %v, %v", in, p, err)
		}
	}
	for _, bad := range []string{"", "25", "%", "-1%", "101%", "NaN%", "Inf%", "a quarter", "25%%"} {
		if _, err := ParsePercent(bad); err == nil {
			t.Errorf("ParsePercent(%q) accepted", bad)
		}
	}
	if s := Percent(12.5).String(); s != "12.5%" {
		t.Errorf("String = %q", s)
	}
	if b, _ := Percent(25).MarshalText(); string(b) != "25%" {
		t.Errorf("MarshalText = %q", b)
	}
	if f := Percent(25).Fraction(); f != 0.25 {
		t.Errorf("Fraction = %v", f)
	}
}
