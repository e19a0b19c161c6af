// Command benchtable reads `go test -bench` output (several -count runs) on
// stdin and prints one markdown table: each benchmark with the median and
// the spread (min..max) of every metric it reports. scripts/bench.sh uses it
// for docs/BENCHMARKS.md.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

type bench struct {
	pkg, name string
	units     []string             // in first-seen order
	values    map[string][]float64 // unit -> samples
}

func main() {
	rows, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	write(os.Stdout, rows)
}

func parse(r io.Reader) ([]*bench, error) {
	var order []*bench
	byKey := map[string]*bench{}
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/wardgate/wardgate/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // GOMAXPROCS suffix
		}
		key := pkg + " " + name
		b := byKey[key]
		if b == nil {
			b = &bench{pkg: pkg, name: name, values: map[string][]float64{}}
			byKey[key] = b
			order = append(order, b)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := b.values[unit]; !seen {
				b.units = append(b.units, unit)
			}
			b.values[unit] = append(b.values[unit], v)
		}
	}
	return order, sc.Err()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 1e6 || v < 0.01:
		return strconv.FormatFloat(v, 'g', 4, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func write(w io.Writer, rows []*bench) {
	fmt.Fprintln(w, "| package | benchmark | runs | median (min..max) per metric |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, b := range rows {
		var parts []string
		runs := 0
		for _, u := range b.units {
			xs := b.values[u]
			runs = max(runs, len(xs))
			lo, hi := xs[0], xs[0]
			for _, x := range xs {
				lo, hi = min(lo, x), max(hi, x)
			}
			p := format(median(xs)) + " " + u
			if lo != hi {
				p += " (" + format(lo) + ".." + format(hi) + ")"
			}
			parts = append(parts, p)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s |\n", b.pkg, b.name, runs, strings.Join(parts, "; "))
	}
}
