package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductionBinaryCarriesNoDemo fails when the gateway binary links the
// demo or a test harness: they belong in cmd/wardgate-demo and in _test.go
// files. `go list -deps` names exactly the packages `go build` links.
func TestProductionBinaryCarriesNoDemo(t *testing.T) {
	const mod = "github.com/wardgate/wardgate/"
	forbidden := []string{
		"github.com/mochi-mqtt/", // the demo's embedded broker
		"github.com/creack/pty",  // the demo's serial device
		mod + "gateway/demo",
		mod + "cmd/wardgate-demo",
		// central security's service and its databases are their own binary.
		mod + "central",
		mod + "cmd/wardgate-central",
		"modernc.org/sqlite",
		"modernc.org/libc",
		"github.com/jackc/pgx",
	}
	// gorilla/websocket is linked by paho.mqtt.golang itself (its ws://
	// transport, no build tag to leave it out); nothing of ours may add it.
	const websocket, paho = "github.com/gorilla/websocket", "github.com/eclipse/paho.mqtt.golang"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	n := 0
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		n++
		pkg := f[0]
		for _, bad := range forbidden {
			if strings.HasPrefix(pkg, bad) {
				t.Errorf("the gateway binary links %s; move it to cmd/wardgate-demo, cmd/wardgate-central or a _test.go file", pkg)
			}
		}
		// Our test harnesses (certstest, stepcatest, haltest, brokertest,
		// certstest...) are test-only.
		if rest, ok := strings.CutPrefix(pkg, mod); ok {
			for _, elem := range strings.Split(rest, "/") {
				if strings.HasSuffix(elem, "test") || strings.HasPrefix(elem, "test") {
					t.Errorf("the gateway binary links the test harness %s", pkg)
				}
			}
		}
		for _, imp := range f[1:] {
			if imp == websocket && pkg != paho {
				t.Errorf("%s imports %s; the gateway speaks MQTT over TLS only", pkg, websocket)
			}
		}
	}
	if n < 50 {
		t.Fatalf("go list named only %d packages; is the package right?", n)
	}
}
