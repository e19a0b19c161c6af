package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	in := `goos: linux
pkg: github.com/wardgate/wardgate/certs
BenchmarkHandshakeFull-2   	     900	   1316000 ns/op	       759.6 handshakes/s	  158924 B/op
BenchmarkHandshakeFull-2   	     900	   1416000 ns/op	       706.2 handshakes/s	  158924 B/op
BenchmarkHandshakeFull-2   	     900	   1216000 ns/op	       822.4 handshakes/s	  158924 B/op
pkg: github.com/wardgate/wardgate/hal
BenchmarkKickerTick-2   	 9000000	       133.0 ns/op
PASS
`
	rows, err := parse(strings.NewReader(in))
	if err != nil || len(rows) != 2 {
		t.Fatalf("%v %d", err, len(rows))
	}
	var out bytes.Buffer
	write(&out, rows)
	for _, want := range []string{
		"| certs | HandshakeFull | 3 | 1.316e+06 ns/op (1.216e+06..1.416e+06); 760 handshakes/s (706..822); 158924 B/op |",
		"| hal | KickerTick | 1 | 133 ns/op |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q in\n%s", want, out.String())
		}
	}
}
