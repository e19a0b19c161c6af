package gateway

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportsPointOneWay fails when certs, hal or config (or anything below
// them) import a gateway package.
func TestImportsPointOneWay(t *testing.T) {
	const mod = "github.com/wardgate/wardgate/"
	cmd := exec.Command("go", "list", "-deps", "-test", "-json=ImportPath,Deps", "../certs/...", "../hal/...", "../config/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	checked := 0
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.ImportPath, mod) {
			continue
		}
		checked++
		for _, d := range append(p.Deps, p.ImportPath) {
			if strings.HasPrefix(d, mod+"gateway") || strings.HasPrefix(d, mod+"cmd") {
				t.Errorf("%s depends on %s: certs, hal and config must not import gateway or cmd", p.ImportPath, d)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	if checked < 3 {
		t.Fatalf("checked only %d packages; is the layout right?", checked)
	}
}
