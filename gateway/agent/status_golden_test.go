package agent

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// keyPaths lists every key path of a JSON document (objects as a.b, list
// elements as a[].b), with the JSON type of each leaf.
func keyPaths(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 && prefix != "" {
			out[prefix] = "object"
		}
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			keyPaths(p, x, out)
		}
	case []any:
		if len(v) == 0 {
			out[prefix+"[]"] = "list"
		}
		for _, x := range v {
			keyPaths(prefix+"[]", x, out)
		}
	case string:
		out[prefix] = "string"
	case float64:
		out[prefix] = "number"
	case bool:
		out[prefix] = "bool"
	case nil:
		out[prefix] = "null"
	}
}

// TestStatusJSONGolden pins the keys of GET /v1/status (`wardgate status
// --json`) in testdata/status.golden and checks that docs/security-team.md
// names every top-level section and every key of gateway, identity and
// telemetry. Run with -update after an intended change, then update the
// docs.
func TestStatusJSONGolden(t *testing.T) {
	e := newEnv(t)
	text := strings.Replace(e.configText(pumpServer), "    owner: ce/icu\n", "    owner: ce/icu\n    retired: 2026-11-01\n    replaced_by: pump-08\n", 1)
	path := filepath.Join(e.dir, "wardgate.yaml")
	os.WriteFile(path, []byte(text), 0o600)
	cfg := e.config(pumpServer)
	e.start(cfg)
	if err := e.a.ReloadFile(path); err != nil {
		t.Fatal(err)
	}
	e.a.raise("example", "an alarm")
	b, err := json.Marshal(e.a.Status())
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	keyPaths("", doc, paths)
	var lines []string
	for p, typ := range paths {
		// Event attributes and LED names vary with what happened;
		// link_since and last_kick appear once the link probe and the
		// watchdog have run (races with the test).
		if strings.HasPrefix(p, "recent_events[].attrs.") || strings.HasPrefix(p, "hardware.leds.") ||
			p == "devices[].link_since" || p == "hardware.watchdog.last_kick" {
			continue
		}
		lines = append(lines, p+" "+typ)
	}
	sort.Strings(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "status.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestStatusJSONGolden -update)", err)
	}
	if got != string(want) {
		t.Errorf("status JSON keys changed; if intended, run with -update and update docs/security-team.md.\ngot:\n%s\nwant:\n%s", got, want)
	}
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "security-team.md"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(docs), "`GET /v1/status` (and `wardgate status --json`) has these keys")
	if i < 0 {
		t.Fatal("docs/security-team.md lost its status key list")
	}
	section := string(docs[i:])
	if j := strings.Index(section[1:], "\n## "); j > 0 {
		section = section[:j+1]
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("[a-z_]+").FindAllString(section, -1) {
		named[m] = true
	}
	for _, l := range lines {
		p := strings.Fields(l)[0]
		parts := strings.Split(strings.ReplaceAll(p, "[]", ""), ".")
		check := parts[:1]
		if len(parts) > 1 && parts[0] != "vendor" {
			check = append(check, parts[1])
		}
		if len(parts) > 2 && (parts[0] == "hardware" || parts[0] == "devices") && parts[1] != "buttons" {
			check = append(check, parts[2])
		}
		for _, k := range check {
			if !named[k] {
				t.Errorf("docs/security-team.md does not name status key %q (of %s)", k, p)
			}
		}
	}
}
