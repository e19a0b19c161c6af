package archive

import "testing"

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 5-5/6", 5, 5, 6, true},
		{"bytes 0-9/9", 0, 0, 0, false},
		{"bytes 9-0/10", 0, 0, 0, false},
		{"bytes -1-3/10", 0, 0, 0, false},
		{"0-9/10", 0, 0, 0, false},
		{"bytes 0-9", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		s, e, tot, err := parseRange(c.in)
		if c.ok != (err == nil) || c.ok && (s != c.start || e != c.end || tot != c.total) {
			t.Errorf("%q: %d %d %d %v", c.in, s, e, tot, err)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	f.Add("bytes 0-9/10")
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, err := parseRange(s)
		if err == nil && (start < 0 || end < start || total <= end) {
			t.Fatalf("%q accepted as %d-%d/%d", s, start, end, total)
		}
	})
}
