package config

import (
	"errors"
	"strings"
	"testing"
)

func withUpload(section string) string {
	return strings.Replace(base, "  state_dir: /var/lib/wardgate", "  state_dir: /var/lib/wardgate\n  recordings:\n    upload:\n"+section, 1)
}

func TestUploadConfig(t *testing.T) {
	cfg, err := Parse("u.yaml", []byte(withUpload("      url: https://central.hospital.example:8444\n")), now)
	if err != nil {
		t.Fatal(err)
	}
	if up := cfg.Gateway.Recordings.Upload; up == nil || up.MaxRate != DefaultUploadMaxRate || up.URL != "https://central.hospital.example:8444" {
		t.Fatalf("upload = %+v", up)
	}
	if cfg, _ := Parse("u.yaml", []byte(base), now); cfg.Gateway.Recordings.Upload != nil {
		t.Fatal("upload set without the section")
	}
	for _, c := range []struct {
		name, section, path, line, msg string
	}{
		{"url missing", "      max_rate: 1MiB\n", "gateway.recordings.upload.url", "upload:", "missing"},
		{"url http", "      url: http://central.example:8444\n", "gateway.recordings.upload.url", "url: http://", "https://HOST:PORT"},
		{"url with path", "      url: https://central.example:8444/x\n", "gateway.recordings.upload.url", "url: https://", "https://HOST:PORT"},
		{"rate too low", "      url: https://central.example:8444\n      max_rate: 1KiB\n", "gateway.recordings.upload.max_rate", "max_rate: 1KiB", "between 8KiB and 1GiB"},
		{"rate too high", "      url: https://central.example:8444\n      max_rate: 2GiB\n", "gateway.recordings.upload.max_rate", "max_rate: 2GiB", "between 8KiB and 1GiB"},
		{"unknown key", "      url: https://central.example:8444\n      rate: 1MiB\n", "gateway.recordings.upload.rate", "rate: 1MiB", "unknown key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := withUpload(c.section)
			_, err := Parse("u.yaml", []byte(text), now)
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want Problems, got %v", err)
			}
			line := lineOf(t, text, c.line)
			for _, p := range ps {
				if p.Path == c.path && p.Line == line && strings.Contains(p.Msg, c.msg) {
					return
				}
			}
			t.Errorf("want u.yaml:%d: %s: ...%s..., got:\n%v", line, c.path, c.msg, err)
		})
	}
}
