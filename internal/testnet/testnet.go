package testnet

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowest is the lowest port handed out: far above the well-known and
// registered ports that a test machine's daemons tend to use.
const lowest = 20000

// Port returns a loopback TCP port that nothing listens on right now, below
// the kernel's ephemeral range when there is room for it there.
func Port() (int, error) {
	top := ephemeralLow()
	if top-lowest < 1000 {
		return kernelPort()
	}
	for range 100 {
		p := lowest + rand.IntN(top-lowest)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, errors.New("testnet: 100 random ports below the ephemeral range were all taken")
}

// FreePort is Port for tests: it fails t when no port is free.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreeAddr is FreePort as "127.0.0.1:PORT".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// Ports returns k distinct free ports.
func Ports(k int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < k {
		p, err := Port()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 on
// Linux by default).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
