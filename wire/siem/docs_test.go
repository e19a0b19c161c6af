package siem

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "siem.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocsListEveryClass keeps the class-id table of docs/siem.md equal
// to the code's.
func TestDocsListEveryClass(t *testing.T) {
	doc := readDoc(t)
	for _, c := range Classes() {
		row := fmt.Sprintf("| `%s` | %d | %s |", c.Kind, c.ID, c.Name)
		if !strings.Contains(doc, row) {
			t.Errorf("docs/siem.md lacks the row %s", row)
		}
	}
	for _, k := range []string{"telemetry.publish_refused", "telemetry.identity_mismatch"} {
		if !strings.Contains(doc, fmt.Sprintf("`%s` is %d", k, ClassOf(k).ID)) &&
			!strings.Contains(doc, fmt.Sprintf("`%s` is\n%d", k, ClassOf(k).ID)) {
			t.Errorf("docs/siem.md: fallback id of %s is not %d", k, ClassOf(k).ID)
		}
	}
}

// TestDocsShellVerifies runs the shell verification example of
// docs/siem.md with openssl against a real signed delivery: it says
// "verified", and REJECT for a tampered body.
func TestDocsShellVerifies(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is missing (scripts/deps.sh installs it)")
		}
		t.Skip("openssl is missing")
	}
	doc := readDoc(t)
	start := strings.Index(doc, "```sh\n")
	if start < 0 {
		t.Fatal("no sh block in docs/siem.md")
	}
	script := doc[start+len("```sh\n"):]
	script = script[:strings.Index(script, "```")]

	clk := clockwork.NewFakeClockAt(time.Now())
	srv := newHookServer(t, clk)
	e := newHookEnv(t, srv, clk)
	_ = e.w.Send(lineCases[0].line)
	r := nextReq(t, srv)
	e.await(t, "delivered")
	for _, c := range []struct {
		body []byte
		want string
	}{
		{r.body, "verified"},
		{append([]byte(" "), r.body...), "REJECT"},
	} {
		dir := t.TempDir()
		_ = os.WriteFile(filepath.Join(dir, "webhook.secret"), append(testSecret, '\n'), 0o600)
		_ = os.WriteFile(filepath.Join(dir, "body.json"), c.body, 0o600)
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TS="+r.header.Get(HeaderTimestamp), "SIG="+r.header.Get(HeaderSignature))
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), c.want) {
			t.Errorf("shell example printed %q, want %q", out, c.want)
		}
	}
}
