package config

import (
	"fmt"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// AdminSocket returns the admin socket path the configuration at path
// names, the way Load would: gateway.admin_socket, or STATE_DIR/admin.sock
// (STATE_DIR defaulting to DefaultStateDir). It reads only those two keys,
// so the admin commands still find a running agent's socket when another
// part of the file has a typo or is otherwise invalid. A file that cannot
// be read, is not YAML, or whose two keys are unusable gives Problems that
// say what to fix.
func AdminSocket(path string) (string, error) {
	data, err := readFile(path)
	if err != nil {
		return "", err
	}
	root, err := parseDocument(path, data)
	if err != nil {
		return "", err
	}
	fail := func(n *yaml.Node, key, format string, args ...any) error {
		return Problems{{File: path, Line: n.Line, Path: key, Msg: fmt.Sprintf(format, args...)}}
	}
	var stateDir, socket string
	gw := mapValue(root, "gateway")
	if gw != nil && gw.Kind != yaml.MappingNode {
		return "", fail(gw, "gateway", "expected a section of key: value pairs, found %s", kindName(gw))
	}
	for _, f := range []struct {
		key, example string
		dst          *string
	}{{"state_dir", DefaultStateDir, &stateDir}, {"admin_socket", "/run/wardgate/admin.sock", &socket}} {
		n := mapValue(gw, f.key)
		if n == nil || n.Tag == "!!null" {
			continue
		}
		if n.Kind != yaml.ScalarNode {
			return "", fail(n, "gateway."+f.key, "expected a path, found %s", kindName(n))
		}
		if !filepath.IsAbs(n.Value) {
			return "", fail(n, "gateway."+f.key, "%q is not an absolute path; use one such as %s", n.Value, f.example)
		}
		*f.dst = n.Value
	}
	setS(&stateDir, DefaultStateDir)
	return defaultAdminSocket(stateDir, socket), nil
}

// mapValue returns the value of key in mapping n (aliases resolved), or
// nil when n is nil, not a mapping, or lacks key. With duplicate keys the
// first wins, as in Load.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			v := n.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}
