package main

import (
	"encoding/json"
	"testing"
)

func TestSBOMCommand(t *testing.T) {
	code, out, errs := runCLI(t, "", "sbom")
	if code != exitOK {
		t.Fatalf("sbom: %d %s", code, errs)
	}
	var doc struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Components  []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if doc.BOMFormat != "CycloneDX" || doc.SpecVersion != "1.5" {
		t.Errorf("header %+v", doc)
	}
	found := false
	for _, c := range doc.Components {
		found = found || c.Name == "go.etcd.io/bbolt"
	}
	if !found {
		t.Errorf("bbolt not among the components: %+v", doc.Components)
	}
	if code, _, _ := runCLI(t, "", "sbom", "extra"); code != exitUsage {
		t.Errorf("sbom with an argument: exit %d", code)
	}
}
