package testnet

import (
	"net"
	"strconv"
	"testing"
)

func TestPortIsBelowTheEphemeralRangeAndFree(t *testing.T) {
	low := ephemeralLow()
	ports, err := Ports(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if low-lowest >= 1000 && (p < lowest || p >= low) {
			t.Errorf("port %d outside [%d, %d)", p, lowest, low)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestPortSkipsATakenPort(t *testing.T) {
	// Hold many ports of the range; every port handed out must be another.
	held := map[int]bool{}
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // taken by someone else meanwhile
		}
		defer l.Close()
		held[p] = true
	}
	for range 200 {
		p := FreePort(t)
		if held[p] {
			t.Fatalf("port %d is held by this test but was handed out", p)
		}
	}
}
