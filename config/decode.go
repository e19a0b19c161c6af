package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the YAML nodes visited while decoding, aliases expanded,
// so that a small file cannot expand into a huge one (an "alias bomb").
const maxNodes = 20000

// decoder turns a YAML node tree into Go values strictly, recording the
// line of every field path and collecting every problem.
type decoder struct {
	file     string
	lines    map[string]int
	problems Problems
	// failed holds the field paths whose value did not decode, or which an
	// unknown key probably misspells. Validation stays quiet about them,
	// their parents and their children: the decode problem already says
	// what to fix, and the value validation would see is not the one meant.
	failed map[string]bool
}

// markFailed records path as not (correctly) decoded.
func (d *decoder) markFailed(path string) {
	if path == "" {
		return
	}
	if d.failed == nil {
		d.failed = map[string]bool{}
	}
	d.failed[path] = true
}

// related reports whether path is a failed path, or a parent or child of
// one.
func (d *decoder) related(path string) bool {
	for f := range d.failed {
		if path == f || within(path, f) || within(f, path) {
			return true
		}
	}
	return false
}

// within reports whether path lies below parent (parent.x or parent[i]).
func within(path, parent string) bool {
	return len(path) > len(parent) && strings.HasPrefix(path, parent) &&
		(path[len(parent)] == '.' || path[len(parent)] == '[')
}

func (d *decoder) addf(line int, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// lineOf returns the line where path, or the nearest parent of path that
// appears in the file, was written.
func (d *decoder) lineOf(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := d.lines[p]; ok {
			return l
		}
	}
	return d.lines[""]
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// expandedSize counts the nodes of n with every alias expanded, stopping
// once the count passes limit. Each anchor is sized once (memo), so the cost
// is linear in the file, whatever the expansion would be.
func expandedSize(n *yaml.Node, memo map[*yaml.Node]int, limit int) int {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if s, ok := memo[n]; ok {
		return s
	}
	memo[n] = limit + 1 // a cycle counts as too large
	size := 1
	for _, c := range n.Content {
		size += expandedSize(c, memo, limit)
		if size > limit {
			break
		}
	}
	memo[n] = size
	return size
}

var scalarType = reflect.TypeFor[scalar]()

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		d.decode(n.Alias, v, path)
		return
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the field unset
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if reflect.PointerTo(v.Type()).Implements(scalarType) {
		if n.Kind != yaml.ScalarNode {
			d.addf(n.Line, path, "expected a single value, found %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(scalar).parseScalar(n.Value); err != nil {
			d.addf(n.Line, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.addf(n.Line, path, "expected a list, found %s; write it as [a, b] or as lines starting with -", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.addf(n.Line, path, "expected text, found %s", kindName(n))
			return
		}
		if n.Tag == "!!bool" {
			d.addf(n.Line, path, "%q reads as a yes/no value; put it in quotes if you meant the text", n.Value)
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.addf(n.Line, path, "expected a whole number, found %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			d.addf(n.Line, path, "%q is not a whole number in range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.addf(n.Line, path, "expected true or false, found %s", kindName(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.addf(n.Line, path, "expected a section of key: value pairs, found %s", kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.addf(k.Line, path, "keys must be plain names, found %s", kindName(k))
			continue
		}
		key := k.Value
		fp := join(path, key)
		if key == "<<" {
			d.addf(k.Line, path, "YAML merge keys (<<) are not supported; write the keys out")
			continue
		}
		if first, dup := seen[key]; dup {
			d.addf(k.Line, fp, "duplicate key; it is already set at line %d, remove one of them", first)
			continue
		}
		seen[key] = k.Line
		idx, ok := fields[key]
		if !ok {
			d.addf(k.Line, fp, "unknown key %q; %s", key, suggest(key, fields))
			if best := closestKey(key, fields); best != "" {
				d.markFailed(join(path, best))
			}
			continue
		}
		d.lines[fp] = k.Line
		d.decode(val, v.Field(idx), fp)
	}
}

// structFields maps YAML keys to field indexes for t.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		m[tag] = i
	}
	return m
}

// suggest names the closest known key, or lists them all.
func suggest(key string, fields map[string]int) string {
	if best := closestKey(key, fields); best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "known keys here: " + strings.Join(sortedKeys(fields), ", ")
}

// closestKey returns the known key within two edits of key, or "".
func closestKey(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for _, k := range sortedKeys(fields) {
		if dist := editDistance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

func sortedKeys(fields map[string]int) []string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of key: value pairs"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!int":
		return "the number " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the yes/no value " + n.Value
	case "!!null":
		return "nothing"
	}
	return fmt.Sprintf("the text %q", n.Value)
}
