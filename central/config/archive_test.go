package config

import (
	"strings"
	"testing"
	"time"
)

func TestArchiveKeys(t *testing.T) {
	base := "version: 1\ncentral: {id: c1, trust_domain: hospital.example}\ntls: {cert: a, key: b, ca: c}\nmqtt: {brokers: [\"mqtts://b:8883\"]}\n"
	c, err := Parse("c.yaml", []byte(base+"archive: {dir: /srv/rec, retention: {sites: {st-long: 3650d}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Archive
	if a == nil || a.Retention.For("other") != DefaultArchiveRetention || a.Retention.For("st-long") != 3650*24*time.Hour ||
		a.PruneEvery.D() != DefaultArchivePruneEvery || a.MaxSize != DefaultArchiveMaxSize {
		t.Fatalf("archive defaults: %+v", a)
	}
	ex, err := Parse("example.yaml", []byte(Example))
	if err != nil || ex.Archive == nil || ex.Archive.Retention.For("st-example") != 3650*24*time.Hour {
		t.Fatalf("example archive: %+v %v", ex, err)
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"no dir", "archive: {retention: {default: 30d}}\n", []string{":5: archive.dir: missing"}},
		{"relative dir", "archive: {dir: rec}\n", []string{"archive.dir", "not an absolute path"}},
		{"short default", "archive: {dir: /r, retention: {default: 1h}}\n", []string{"archive.retention.default", "less than a day"}},
		{"short site", "archive: {dir: /r, retention: {sites: {st-1: 2h}}}\n", []string{"archive.retention.sites.st-1", "less than a day"}},
		{"bad site", "archive: {dir: /r, retention: {sites: {\"a b\": 30d}}}\n", []string{"not a site id"}},
		{"bad size", "archive: {dir: /r, max_size: lots}\n", []string{":5:", "lots"}},
		{"small size", "archive: {dir: /r, max_size: 1KiB}\n", []string{"archive.max_size", "outside"}},
		{"prune range", "archive: {dir: /r, prune_every: 1s}\n", []string{"archive.prune_every", "outside"}},
		{"unknown key", "archive: {dir: /r, retain: 30d}\n", []string{`:5: unknown key "retain"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(base+tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
