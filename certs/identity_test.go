package certs

import (
	"errors"
	"strings"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	const td = "hospital.example"
	tests := []struct {
		name string
		uri  string
		want Identity
		err  bool
	}{
		{"gateway", "spiffe://hospital.example/gateway/gw-01", Identity{Kind: KindGateway, Gateway: "gw-01"}, false},
		{"vendor", "spiffe://hospital.example/vendor/acme-medical/jane.doe", Identity{Kind: KindVendor, Org: "acme-medical", Person: "jane.doe"}, false},
		{"service", "spiffe://hospital.example/svc/pump-server", Identity{Kind: KindService, Service: "pump-server"}, false},
		{"approver", "spiffe://hospital.example/approver/ciso/jdoe", Identity{Kind: KindApprover, Role: "ciso", Person: "jdoe"}, false},
		{"other trust domain", "spiffe://other.example/gateway/gw-01", Identity{}, true},
		{"not spiffe", "https://hospital.example/gateway/gw-01", Identity{}, true},
		{"unknown kind", "spiffe://hospital.example/robot/r2", Identity{}, true},
		{"vendor missing person", "spiffe://hospital.example/vendor/acme", Identity{}, true},
		{"gateway extra segment", "spiffe://hospital.example/gateway/gw-01/x", Identity{}, true},
		{"empty segment", "spiffe://hospital.example/gateway//gw", Identity{}, true},
		{"trailing slash", "spiffe://hospital.example/gateway/gw-01/", Identity{}, true},
		{"dot segment", "spiffe://hospital.example/svc/..", Identity{}, true},
		{"query", "spiffe://hospital.example/svc/a?b=c", Identity{}, true},
		{"uppercase trust domain", "spiffe://Hospital.example/svc/a", Identity{}, true},
		{"no path", "spiffe://hospital.example", Identity{}, true},
		{"empty", "", Identity{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIdentity(tt.uri, td)
			if tt.err {
				if !errors.Is(err, ErrBadIdentity) {
					t.Fatalf("err = %v, want ErrBadIdentity", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.TrustDomain, tt.want.URI = td, tt.uri
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestURIBuilders(t *testing.T) {
	td := "h.example"
	for _, uri := range []string{GatewayURI(td, "g"), VendorURI(td, "o", "p"), ServiceURI(td, "s"), ApproverURI(td, "r", "p")} {
		if _, err := ParseIdentity(uri, td); err != nil {
			t.Errorf("%s: %v", uri, err)
		}
	}
	for k, want := range map[Kind]string{KindGateway: "gateway", KindVendor: "vendor", KindService: "svc", KindApprover: "approver", KindUnknown: "unknown"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q", k, k.String())
		}
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		uri     string
		want    bool
	}{
		{"spiffe://h.example/svc/pump-server", "spiffe://h.example/svc/pump-server", true},
		{"spiffe://h.example/svc/pump-server", "spiffe://h.example/svc/pump-server2", false},
		{"spiffe://h.example/svc/pump-server", "spiffe://h.example/svc/pump-server/x", false},
		{"spiffe://h.example/vendor/acme/*", "spiffe://h.example/vendor/acme/jane", true},
		{"spiffe://h.example/vendor/acme/*", "spiffe://h.example/vendor/acme", false},
		{"spiffe://h.example/vendor/acme/*", "spiffe://h.example/vendor/acme/jane/x", false},
		{"spiffe://h.example/vendor/acme/*", "spiffe://h.example/vendor/other/jane", false},
		{"spiffe://h.example/vendor/*/jane", "spiffe://h.example/vendor/acme/jane", true},
		{"spiffe://h.example/vendor/**", "spiffe://h.example/vendor/acme/jane", true},
		{"spiffe://h.example/vendor/**", "spiffe://h.example/vendor/acme", true},
		{"spiffe://h.example/vendor/**", "spiffe://h.example/vendor", false},
		{"spiffe://h.example/**", "spiffe://h.example/svc/a", true},
		{"spiffe://h.example/**", "spiffe://other.example/svc/a", false},
		{"spiffe://*/svc/a", "spiffe://other.example/svc/a", true},
		{"spiffe://h.example/svc/*", "spiffe://h.example/svc/", false},
		{"spiffe://h.example/svc/*", "spiffe://h.example/svc/a?x", false},
		{"spiffe://h.example/svc/*", "not a uri", false},
	}
	for _, tt := range tests {
		p, err := CompilePattern(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		if got := p.Match(tt.uri); got != tt.want {
			t.Errorf("%s.Match(%s) = %v, want %v", tt.pattern, tt.uri, got, tt.want)
		}
	}
	if (Pattern{}).Match("spiffe://h.example/svc/a") {
		t.Error("zero pattern matched")
	}
}

func TestCompilePatternErrors(t *testing.T) {
	for _, s := range []string{
		"", "h.example/svc/a", "spiffe://h.example", "spiffe://h.example/**/a", "spiffe://**/a",
		"spiffe://h.example//a", "spiffe://H.example/a", "spiffe://h.example/a b", "spiffe://h.example/a*",
	} {
		if _, err := CompilePattern(s); !errors.Is(err, ErrBadPattern) {
			t.Errorf("CompilePattern(%q) err = %v, want ErrBadPattern", s, err)
		}
	}
	if _, err := CompilePatterns([]string{"spiffe://h.example/svc/a", "bad", "worse"}); err == nil {
		t.Error("CompilePatterns accepted bad patterns")
	}
	ps, err := CompilePatterns([]string{"spiffe://h.example/svc/a", "spiffe://h.example/vendor/**"})
	if err != nil || len(ps) != 2 || !MatchAny(ps, "spiffe://h.example/vendor/a/b") || MatchAny(ps, "spiffe://h.example/svc/b") {
		t.Errorf("CompilePatterns/MatchAny: %v %v", ps, err)
	}
}

func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{
		"spiffe://h.example/gateway/gw-01", "spiffe://h.example/vendor/a/b", "spiffe://h.example/svc/x",
		"spiffe://h.example/approver/r/p", "spiffe://h.example/", "spiffe://", "spiffe:///a", "spiffe://h.example/vendor/a/b/c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		id, err := ParseIdentity(uri, "h.example")
		if err != nil {
			return
		}
		if id.URI != uri || id.Kind == KindUnknown {
			t.Fatalf("bad identity %+v", id)
		}
		// Round trip through the builders.
		var again string
		switch id.Kind {
		case KindGateway:
			again = GatewayURI(id.TrustDomain, id.Gateway)
		case KindVendor:
			again = VendorURI(id.TrustDomain, id.Org, id.Person)
		case KindService:
			again = ServiceURI(id.TrustDomain, id.Service)
		case KindApprover:
			again = ApproverURI(id.TrustDomain, id.Role, id.Person)
		}
		if again != uri {
			t.Fatalf("round trip %q -> %q", uri, again)
		}
	})
}

func FuzzPattern(f *testing.F) {
	f.Add("spiffe://h.example/vendor/*", "spiffe://h.example/vendor/a")
	f.Add("spiffe://h.example/**", "spiffe://h.example/a/b/c")
	f.Add("spiffe://*/svc/a", "spiffe://x/svc/a")
	f.Fuzz(func(t *testing.T, pattern, uri string) {
		p, err := CompilePattern(pattern)
		if err != nil {
			return
		}
		if p.Match(uri) {
			if _, _, err := splitSPIFFE(uri); err != nil {
				t.Fatalf("%q matched invalid uri %q", pattern, uri)
			}
		}
		// A pattern without wildcards matches itself.
		if !strings.Contains(pattern, "*") && !p.Match(pattern) {
			t.Fatalf("%q does not match itself", pattern)
		}
	})
}
