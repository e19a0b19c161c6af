package agent

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var eventKind = regexp.MustCompile(`^[a-z][a-z_]*\.[a-z_]+$`)

// emittedKinds collects, from the non-test sources of the gateway and
// wire packages, every event kind the code can emit:
//   - string constants named Ev*, Event* or Kind* whose value looks like
//     a.kind;
//   - literal kinds passed to emit/emitThen and in wire.Event{Kind: ...};
//   - the identity.* kinds: "identity." + every certs.EventKind constant;
//   - the update.* kinds: "update." + every step the release Updater
//     reports (u.report("STEP", ...)).
func emittedKinds(t *testing.T, root string) map[string]string {
	t.Helper()
	kinds := map[string]string{} // kind -> where
	fset := token.NewFileSet()
	add := func(k string, pos token.Pos) {
		if eventKind.MatchString(k) {
			if _, ok := kinds[k]; !ok {
				kinds[k] = fset.Position(pos).String()
			}
		}
	}
	lit := func(e ast.Expr) (string, bool) {
		if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
			s, err := strconv.Unquote(bl.Value)
			return s, err == nil
		}
		return "", false
	}
	for _, dir := range []string{"gateway", "wire", "certs"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "demo" || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			inCerts := strings.Contains(filepath.ToSlash(path), "/certs/")
			inRelease := strings.Contains(filepath.ToSlash(path), "/gateway/release/")
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.ValueSpec:
					for i, name := range n.Names {
						if i >= len(n.Values) {
							break
						}
						s, ok := lit(n.Values[i])
						if !ok {
							continue
						}
						if inCerts {
							if id, ok := n.Type.(*ast.Ident); ok && id.Name == "EventKind" {
								add("identity."+s, n.Pos())
							}
							continue
						}
						if strings.HasPrefix(name.Name, "Ev") || strings.HasPrefix(name.Name, "Event") || strings.HasPrefix(name.Name, "Kind") {
							add(s, n.Pos())
						}
					}
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					switch {
					case (sel.Sel.Name == "emit" || sel.Sel.Name == "emitThen") && len(n.Args) >= 2:
						if s, ok := lit(n.Args[1]); ok {
							add(s, n.Pos())
						}
					case inRelease && sel.Sel.Name == "report" && len(n.Args) >= 1:
						if s, ok := lit(n.Args[0]); ok {
							add("update."+s, n.Pos())
						}
					}
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Kind" {
						if s, ok := lit(n.Value); ok {
							add(s, n.Pos())
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return kinds
}

// TestEventsDocumented fails when the code can emit an event kind that
// docs/events.md does not document, or documents one nothing emits.
func TestEventsDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "events.md"))
	if err != nil {
		t.Fatal(err)
	}
	// WARDGATE_EVENTS_SOURCE checks another checkout's code against
	// these docs (e.g. before a merge).
	src := root
	if s := os.Getenv("WARDGATE_EVENTS_SOURCE"); s != "" {
		src = s
	}
	kinds := emittedKinds(t, src)
	if len(kinds) < 40 {
		t.Fatalf("only %d event kinds found in the code; the collector is broken: %v", len(kinds), kinds)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	var missing []string
	for k, where := range kinds {
		if !documented[k] {
			missing = append(missing, k+" ("+where+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("event kind %s is emitted but not documented in docs/events.md", m)
	}
	// A documented kind nothing emits is reported but not fatal: branches
	// merge their docs and code at different times.
	for k := range documented {
		if _, ok := kinds[k]; !ok {
			t.Logf("docs/events.md documents %s, which nothing here emits", k)
		}
	}
}
