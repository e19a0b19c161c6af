package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"runtime/debug"
	"sort"
	"strings"
)

// CycloneDX is the SBOM format and version `wardgate sbom` prints.
const (
	SBOMFormat  = "CycloneDX"
	SBOMVersion = "1.5"
)

// ErrNoBuildInfo is returned when the binary carries no module build
// information (built without module support).
var ErrNoBuildInfo = errors.New("the binary carries no build information")

type bom struct {
	BOMFormat    string       `json:"bomFormat"`
	SpecVersion  string       `json:"specVersion"`
	Version      int          `json:"version"`
	Metadata     bomMetadata  `json:"metadata"`
	Components   []component  `json:"components"`
	Dependencies []dependency `json:"dependencies"`
}

type bomMetadata struct {
	Component  component  `json:"component"`
	Properties []property `json:"properties,omitempty"`
}

type component struct {
	Type    string `json:"type"`
	BOMRef  string `json:"bom-ref"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	PURL    string `json:"purl,omitempty"`
	// Properties carry the module checksum (Go's h1: hash, which has no
	// CycloneDX hash algorithm) and the Go version.
	Properties []property `json:"properties,omitempty"`
}

type property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type dependency struct {
	Ref       string   `json:"ref"`
	DependsOn []string `json:"dependsOn"`
}

func purl(path, version string) string {
	p := "pkg:golang/" + path
	if version != "" {
		p += "@" + url.PathEscape(version)
	}
	return p
}

// SBOM returns the CycloneDX 1.5 JSON SBOM of a binary described by bi: the
// main module as the metadata component, every linked module (with its
// replacement, if any) as a library component, and the Go toolchain and
// build settings as properties. The output is deterministic (no time
// stamp, no random serial number), so that its hash identifies the build.
func SBOM(bi *debug.BuildInfo) ([]byte, error) {
	if bi == nil {
		return nil, ErrNoBuildInfo
	}
	mainVersion := bi.Main.Version
	if mainVersion == "" {
		mainVersion = "(devel)"
	}
	b := bom{BOMFormat: SBOMFormat, SpecVersion: SBOMVersion, Version: 1}
	b.Metadata.Component = component{Type: "application", BOMRef: purl(bi.Main.Path, mainVersion), Name: bi.Main.Path,
		Version: mainVersion, PURL: purl(bi.Main.Path, mainVersion)}
	b.Metadata.Properties = append(b.Metadata.Properties, property{"golang:go_version", bi.GoVersion})
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "-ldflags") {
			continue // may carry build-host paths
		}
		b.Metadata.Properties = append(b.Metadata.Properties, property{"golang:build:" + s.Key, s.Value})
	}
	root := dependency{Ref: b.Metadata.Component.BOMRef, DependsOn: []string{}}
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		c := component{Type: "library", BOMRef: purl(d.Path, m.Version), Name: d.Path, Version: m.Version, PURL: purl(d.Path, m.Version)}
		if m.Sum != "" {
			c.Properties = append(c.Properties, property{"golang:module_sum", m.Sum})
		}
		if d.Replace != nil {
			c.Properties = append(c.Properties, property{"golang:replaced_by", d.Replace.Path})
		}
		b.Components = append(b.Components, c)
		root.DependsOn = append(root.DependsOn, c.BOMRef)
	}
	sort.Slice(b.Components, func(i, j int) bool { return b.Components[i].BOMRef < b.Components[j].BOMRef })
	sort.Strings(root.DependsOn)
	if b.Components == nil {
		b.Components = []component{}
	}
	b.Dependencies = []dependency{root}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// SelfSBOM is SBOM of the running binary.
func SelfSBOM() ([]byte, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, ErrNoBuildInfo
	}
	return SBOM(bi)
}

// SelfSBOMHash is the SHA-256 (hex) of SelfSBOM, or "" when the binary has
// no build information.
func SelfSBOMHash() string {
	b, err := SelfSBOM()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
