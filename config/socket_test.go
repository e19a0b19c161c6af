package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminSocket(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, content, want string
	}{
		{"explicit", "version: 1\ngateway: {admin_socket: /run/wg/admin.sock}\n", "/run/wg/admin.sock"},
		{"from state_dir", "version: 1\ngateway:\n  state_dir: /srv/wg\n", "/srv/wg/admin.sock"},
		{"all defaults", "version: 1\n", "/var/lib/wardgate/admin.sock"},
		{"empty value", "version: 1\ngateway: {admin_socket: , state_dir: /srv/wg}\n", "/srv/wg/admin.sock"},
		{"typo and invalid values elsewhere", "version: 1\ngateway:\n  admin_socket: /run/wg/admin.sock\n  sitte: x\nhal: {drivr: sim}\nmqtt: {outbox_max: lots}\ndevices: nope\n", "/run/wg/admin.sock"},
		{"unknown version", "version: 7\ngateway: {state_dir: /srv/wg}\n", "/srv/wg/admin.sock"},
		{"alias", "version: 1\ndirs: &d /srv/x\ngateway: {state_dir: *d}\n", "/srv/x/admin.sock"},
		{"same as Load", Example, "/run/wardgate/admin.sock"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AdminSocket(write("c.yaml", tc.content))
			if err != nil || got != tc.want {
				t.Errorf("AdminSocket = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	cfg, err := Parse("b.yaml", []byte(base), now)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := AdminSocket(write("base.yaml", base)); got != cfg.Gateway.AdminSocket {
		t.Errorf("AdminSocket %q, Load %q: the defaults differ", got, cfg.Gateway.AdminSocket)
	}

	bad := []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "nope.yaml"), "no such file"},
		{"not yaml", write("bin.yaml", "\x00\x01{[: ]]\n"), "not valid YAML"},
		{"not a mapping", write("list.yaml", "- a\n"), "key: value pairs"},
		{"gateway not a section", write("g.yaml", "version: 1\ngateway: [a]\n"), "gateway: expected a section"},
		{"socket not text", write("s.yaml", "version: 1\ngateway: {admin_socket: [a]}\n"), "gateway.admin_socket: expected a path"},
		{"socket relative", write("r.yaml", "version: 1\ngateway: {admin_socket: admin.sock}\n"), "gateway.admin_socket: \"admin.sock\" is not an absolute path"},
		{"state_dir relative", write("d.yaml", "version: 1\ngateway: {state_dir: var/wg}\n"), "gateway.state_dir: \"var/wg\" is not an absolute path"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AdminSocket(tc.path)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), tc.path) {
				t.Errorf("AdminSocket = %q, %v; want an error about %q", got, err, tc.want)
			}
		})
	}
}
