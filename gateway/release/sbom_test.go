package release

import (
	"encoding/json"
	"runtime/debug"
	"testing"
)

func TestSBOM(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Path: "github.com/wardgate/wardgate/cmd/wardgate",
		Main: debug.Module{Path: "github.com/wardgate/wardgate", Version: "v1.2.3"},
		Deps: []*debug.Module{
			{Path: "go.etcd.io/bbolt", Version: "v1.4.0", Sum: "h1:abc="},
			{Path: "example.com/old", Version: "v0.1.0", Replace: &debug.Module{Path: "example.com/new", Version: "v0.2.0", Sum: "h1:def="}},
		},
		Settings: []debug.BuildSetting{{Key: "GOARCH", Value: "arm64"}, {Key: "-ldflags", Value: "-X main.secretpath=/home/x"}},
	}
	out, err := SBOM(bi)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component  struct{ Name, Version, PURL string }
			Properties []struct{ Name, Value string }
		}
		Components []struct {
			Type, Name, Version, PURL string
			Properties                []struct{ Name, Value string }
		}
		Dependencies []struct {
			Ref       string
			DependsOn []string
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.BOMFormat != "CycloneDX" || doc.SpecVersion != "1.5" || doc.Metadata.Component.PURL != "pkg:golang/github.com/wardgate/wardgate@v1.2.3" {
		t.Errorf("header %+v", doc)
	}
	if len(doc.Components) != 2 || doc.Components[0].PURL != "pkg:golang/example.com/old@v0.2.0" || doc.Components[1].Name != "go.etcd.io/bbolt" || doc.Components[1].Type != "library" {
		t.Errorf("components %+v", doc.Components)
	}
	if len(doc.Dependencies) != 1 || len(doc.Dependencies[0].DependsOn) != 2 {
		t.Errorf("dependencies %+v", doc.Dependencies)
	}
	for _, p := range doc.Metadata.Properties {
		if p.Name == "golang:build:-ldflags" {
			t.Error("ldflags leaked into the SBOM")
		}
	}
	// Deterministic: the same build gives the same bytes.
	again, _ := SBOM(bi)
	if string(again) != string(out) {
		t.Error("SBOM is not deterministic")
	}
	if _, err := SBOM(nil); err != ErrNoBuildInfo {
		t.Errorf("nil build info: %v", err)
	}
	if h := SelfSBOMHash(); len(h) != 64 {
		t.Errorf("SelfSBOMHash = %q", h)
	}
}
