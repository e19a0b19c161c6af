package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest configuration file accepted.
const MaxFileSize = 1 << 20

// Load reads, decodes, defaults and validates the configuration at path.
// now is the time used by rules about dates (exception expiry). On any
// problem it returns a nil Config and Problems listing all of them.
func Load(path string, now time.Time) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, now)
}

// readFile reads a configuration file, turning the usual failures into a
// Problem that says what to do.
func readFile(path string) ([]byte, error) {
	fail := func(format string, args ...any) error {
		return Problems{{File: path, Msg: fmt.Sprintf(format, args...)}}
	}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fail("no such file; check the path, or create one from `wardgate config example`")
	case errors.Is(err, fs.ErrPermission):
		return nil, fail("cannot read the file: permission denied; run as a user that may read it (e.g. the wardgate user) or fix its mode")
	case err != nil:
		return nil, fail("cannot open the file: %v", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fail("is a directory; give the path of the configuration file itself")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fail("cannot read the file: %v", err)
	}
	return data, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse decodes, defaults and validates configuration bytes; file names
// them in problems. Decode problems (unknown keys, wrong types) and
// validation problems are reported together; validation says nothing about
// a field that did not decode, nor about its parents and children. A
// valid configuration comes back with its Warnings set.
func Parse(file string, data []byte, now time.Time) (*Config, error) {
	root, err := parseDocument(file, data)
	if err != nil {
		return nil, err
	}
	if expandedSize(root, map[*yaml.Node]int{}, maxNodes) > maxNodes {
		return nil, Problems{{File: file, Msg: fmt.Sprintf("the file expands to more than %d values through YAML aliases (an alias bomb?); write the values out", maxNodes)}}
	}
	d := &decoder{file: file, lines: map[string]int{"": root.Line}}
	var cfg Config
	d.decode(root, reflect.ValueOf(&cfg).Elem(), "")
	for _, p := range d.problems {
		d.markFailed(p.Path)
	}
	if _, ok := d.lines["version"]; !ok {
		d.addf(root.Line, "version", "missing; add `version: %d` as the first line", Version)
	} else if cfg.Version != Version && !d.failed["version"] {
		// Another version's keys mean other things: report only this.
		return nil, Problems{{File: file, Line: d.lines["version"], Path: "version",
			Msg: fmt.Sprintf("version %d is not supported; this wardgate reads version %d", cfg.Version, Version)}}
	}

	applyDefaults(&cfg)
	v := &validator{d: d, now: now}
	v.validate(&cfg)
	if len(d.problems) > 0 {
		return nil, d.problems.sorted()
	}
	sum := sha256.Sum256(data)
	cfg.File, cfg.Hash = file, hex.EncodeToString(sum[:])
	cfg.Warnings = warnings(&cfg, d)
	return &cfg, nil
}

// parseDocument checks the file as a whole and returns its top-level
// mapping.
func parseDocument(file string, data []byte) (*yaml.Node, error) {
	fail := func(line int, format string, args ...any) error {
		return Problems{{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}}
	}
	if len(data) > MaxFileSize {
		return nil, fail(0, "the file is larger than 1 MiB; a wardgate configuration is much smaller: check you gave the right file")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fail(0, "the file is empty; start from `wardgate config example`")
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, yamlSyntaxProblem(file, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, fail(extra.Line, "the file holds more than one YAML document (---); keep one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "the file must be a section of key: value pairs starting with `version: 1`")
	}
	return root, nil
}

// yamlSyntaxProblem turns a YAML parser error into a Problem with a hint.
func yamlSyntaxProblem(file string, data []byte, err error) error {
	msg, line := err.Error(), 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &line)
		msg = m[2]
	}
	lines := strings.Split(string(data), "\n")
	// The parser reports tabs at or near the offending line.
	for i := max(0, line-2); i < min(len(lines), line+1); i++ {
		if strings.Contains(strings.SplitN(lines[i], "#", 2)[0], "\t") {
			return Problems{{File: file, Line: i + 1, Msg: "tab character found; YAML indentation must use spaces, replace the tabs"}}
		}
	}
	return Problems{{File: file, Line: line, Msg: "not valid YAML: " + msg + "; check indentation and quoting"}}
}
