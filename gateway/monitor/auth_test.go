package monitor

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	jo   = "spiffe://hospital.example/vendor/acme/jo"
	pump = "spiffe://hospital.example/svc/pump-server"
)

// step is one thing that happens in a detector case.
type step struct {
	advance time.Duration
	kind    string
	attrs   []string
	times   int // repeat (default 1)
}

func TestAuthDetectors(t *testing.T) {
	hsFail := func(src string) step {
		return step{kind: "clinical.handshake_failed", attrs: []string{"device", "pump-07", "remote", src + ":40000", "reason", "tls_protocol"}}
	}
	rep := func(s step, n int) step { s.times = n; return s }
	cases := []struct {
		name  string
		steps []step
		want  string // finding kinds, space separated
		check func(t *testing.T, fs []Finding)
	}{
		{"burst per source", []step{rep(hsFail("192.0.2.5"), 20)}, KindAuthBurst + " " + KindAuthBurst, func(t *testing.T, fs []Finding) {
			f := fs[0]
			if f.Key != "source:192.0.2.5" || f.Count != 20 || f.Evidence["threshold"] != "20" || f.Evidence["devices"] != "pump-07" || f.Severity() != SevWarning {
				t.Errorf("finding %+v", f)
			}
			if fs[1].Key != "device:pump-07" || fs[1].Owner != "clinical-engineering/icu" {
				t.Errorf("device finding %+v", fs[1])
			}
		}},
		{"many sources, one device", func() []step {
			var s []step
			for i := range 20 {
				s = append(s, hsFail(fmt.Sprintf("192.0.2.%d", i)))
			}
			return s
		}(), KindAuthBurst, func(t *testing.T, fs []Finding) {
			if fs[0].Key != "device:pump-07" || fs[0].Count != 20 || fs[0].Evidence["last_remote"] != "192.0.2.19:40000" {
				t.Errorf("finding %+v", fs[0])
			}
		}},
		{"below the threshold", []step{rep(hsFail("192.0.2.5"), 19)}, "", nil},
		{"window ends before the threshold", []step{rep(hsFail("192.0.2.5"), 15), {advance: 6 * time.Minute}, rep(hsFail("192.0.2.5"), 15)}, "", nil},
		{"a folded summary counts for the device", []step{{kind: "clinical.handshake_failed", attrs: []string{"device", "pump-07", "remote", "192.0.2.6:1", "reason", "tls_protocol", "suppressed", "24"}}}, KindAuthBurst, func(t *testing.T, fs []Finding) {
			if fs[0].Count != 25 || fs[0].Key != "device:pump-07" {
				t.Errorf("count %d", fs[0].Count)
			}
		}},
		{"burst per claimed identity from many sources", func() []step {
			var s []step
			for i := range 10 {
				s = append(s, step{kind: "clinical.refused", attrs: []string{"device", fmt.Sprintf("dev-%d", i), "claimed", pump, "remote", fmt.Sprintf("198.51.100.%d:5000", i), "reason", "not_allowed"}})
			}
			return s
		}(), KindAuthBurst, func(t *testing.T, fs []Finding) {
			if fs[0].Key != "identity:"+pump || fs[0].Count != 10 {
				t.Errorf("finding %+v", fs[0])
			}
		}},
		{"vendor refusals per source", func() []step {
			var s []step
			for range 4 { // the broker folds per source and code: counts add up
				s = append(s, step{kind: "vendor.refused", attrs: []string{"code", "handshake", "remote", "198.51.100.7:5000", "reason", "no client certificate", "count", "5"}})
			}
			return s
		}(), KindAuthBurst, func(t *testing.T, fs []Finding) {
			if fs[0].Key != "source:198.51.100.7" || fs[0].Count != 20 {
				t.Errorf("finding %+v", fs[0])
			}
		}},
		{"locked vendor refused by the peer policy", []step{{kind: "vendor.refused", attrs: []string{"code", "identity", "remote", "192.0.2.9:1", "reason", "your identity is locked on this gateway"}}}, KindLockedRetry, func(t *testing.T, fs []Finding) {
			if fs[0].Key != "192.0.2.9" {
				t.Errorf("key %q", fs[0].Key)
			}
		}},
		{"unknown issuer, clinical", []step{{kind: "clinical.refused", attrs: []string{"device", "pump-07", "claimed", pump, "remote", "192.0.2.9:1", "reason", "untrusted"}}}, KindUnknownIssuer, func(t *testing.T, fs []Finding) {
			if fs[0].Owner != "clinical-engineering/icu" || fs[0].Severity() != SevAlarm || fs[0].Attrs()["what_to_do"] == "" {
				t.Errorf("finding %+v", fs[0])
			}
		}},
		{"unknown issuer, vendor", []step{{kind: "vendor.refused", attrs: []string{"code", "bad_certificate", "remote", "192.0.2.9:1", "reason", "client certificate does not verify: not issued by a CA this gateway trusts"}}}, KindUnknownIssuer, nil},
		{"refused lifetime, clinical", []step{{kind: "clinical.refused", attrs: []string{"device", "pump-07", "identity", pump, "remote", "192.0.2.9:1", "reason", "lifetime_too_long"}}}, KindRefusedLifetime, nil},
		{"refused lifetime, vendor", []step{{kind: "vendor.refused", attrs: []string{"code", "identity", "vendor", jo, "remote", "192.0.2.9:1", "reason", "certificate lifetime 48h0m0s exceeds the 12h0m0s allowed"}}}, KindRefusedLifetime, nil},
		{"locked identity retries", []step{
			{kind: "vendor.refused", attrs: []string{"code", "locked", "vendor", jo, "remote", "192.0.2.9:1"}},
			{kind: "clinical.refused", attrs: []string{"device", "pump-07", "identity", jo, "remote", "192.0.2.9:2", "reason", "locked"}},
		}, KindLockedRetry, func(t *testing.T, fs []Finding) {
			if fs[0].Key != jo {
				t.Errorf("key %q", fs[0].Key)
			}
		}},
		{"one vendor from two sources at once", []step{
			{kind: "vendor.session_start", attrs: []string{"vendor", jo, "device", "pump-07", "session", "s1", "remote", "203.0.113.1:5000"}},
			{advance: 30 * time.Minute, kind: "vendor.session_start", attrs: []string{"vendor", jo, "device", "pump-07", "session", "s2", "remote", "203.0.113.2:5000"}},
		}, KindTwoSources, func(t *testing.T, fs []Finding) {
			if fs[0].Evidence["other_sources"] != "203.0.113.1" || fs[0].Evidence["source"] != "203.0.113.2" {
				t.Errorf("evidence %v", fs[0].Evidence)
			}
		}},
		{"one vendor from two sources one after the other", []step{
			{kind: "vendor.session_start", attrs: []string{"vendor", jo, "device", "pump-07", "session", "s1", "remote", "203.0.113.1:5000"}},
			{advance: 10 * time.Minute, kind: "vendor.session_end", attrs: []string{"vendor", jo, "session", "s1"}},
			{advance: 3 * time.Minute, kind: "tick"},
			{kind: "vendor.session_start", attrs: []string{"vendor", jo, "device", "pump-07", "session", "s2", "remote", "203.0.113.2:5000"}},
		}, "", nil},
		{"one vendor, one source, two sessions", []step{
			{kind: "vendor.session_start", attrs: []string{"vendor", jo, "device", "pump-07", "session", "s1", "remote", "203.0.113.1:5000"}},
			{kind: "vendor.session_start", attrs: []string{"vendor", jo, "device", "pump-07", "session", "s2", "remote", "203.0.113.1:5001"}},
		}, "", nil},
		{"vendor request off hours", []step{{advance: 5 * 24 * time.Hour, kind: "vendor.request", attrs: []string{"vendor", jo, "device", "pump-07", "grant", "G1"}}}, KindVendorOffHours, func(t *testing.T, fs []Finding) {
			if fs[0].Evidence["what"] != "requested" || fs[0].Severity() != SevWarning || fs[0].Owner != "clinical-engineering/icu" {
				t.Errorf("finding %+v", fs[0])
			}
		}},
		{"vendor request in hours", []step{{kind: "vendor.request", attrs: []string{"vendor", jo, "device", "pump-07"}}}, "", nil},
		{"vendor refused off hours by the broker", []step{{advance: 12 * time.Hour, kind: "vendor.refused", attrs: []string{"vendor", jo, "device", "pump-07", "code", "off_hours", "count", "3"}}}, KindVendorOffHours, func(t *testing.T, fs []Finding) {
			if fs[0].Severity() != SevInfo || fs[0].Count != 3 {
				t.Errorf("finding %+v", fs[0])
			}
		}},
		{"device without hours", []step{{advance: 5 * 24 * time.Hour, kind: "vendor.session_start", attrs: []string{"vendor", jo, "device", "mon-03", "session", "s9", "remote", "203.0.113.1:1"}}}, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tm := newTestMonitor(t, nil)
			for _, s := range tc.steps {
				tm.clock.Advance(s.advance)
				if s.kind == "tick" {
					tm.Tick(tm.clock.Now())
					continue
				}
				for range max(1, s.times) {
					tm.ev(s.kind, s.attrs...)
				}
			}
			fs := tm.take()
			if got := kinds(fs); got != tc.want {
				t.Fatalf("findings %q, want %q: %+v", got, tc.want, fs)
			}
			if tc.check != nil {
				tc.check(t, fs)
			}
		})
	}
}

func TestNewClinicalIdentity(t *testing.T) {
	tm := newTestMonitor(t, nil)
	start := func(id string) {
		tm.ev("clinical.session_start", "device", "pump-07", "identity", id, "remote", "10.1.0.5:3000")
	}
	start(pump) // learning
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("finding while learning: %v", kinds(fs))
	}
	tm.clock.Advance(7*24*time.Hour + time.Minute)
	start(pump)
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("known identity reported: %v", kinds(fs))
	}
	other := "spiffe://hospital.example/svc/new-thing"
	start(other)
	fs := tm.take()
	if kinds(fs) != KindNewClinicalID || fs[0].Evidence["identity"] != other || fs[0].Owner != "clinical-engineering/icu" {
		t.Fatalf("findings %+v", fs)
	}
	start(other)
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("second session reported again: %v", kinds(fs))
	}
	// Learned state survives a restart.
	tm.Close()
	tm2 := newTestMonitor(t, nil, func(o *Options) { o.Path = tm.path; o.Clock = tm.clock })
	tm2.ev("clinical.session_start", "device", "pump-07", "identity", other, "remote", "10.1.0.5:3000")
	tm2.ev("clinical.session_start", "device", "mon-03", "identity", other, "remote", "10.1.0.5:3000")
	if fs := tm2.take(); len(fs) != 0 {
		t.Fatalf("after restart: %v", kinds(fs))
	}
}

func TestApproverOffHours(t *testing.T) {
	tm := newTestMonitor(t, nil)
	ann := "central:spiffe://hospital.example/approver/biomed/ann"
	for i := range 20 { // 20 workdays at 10:xx
		tm.clock.Advance(24 * time.Hour)
		tm.ev("vendor.approve", "actor", ann, "grant", fmt.Sprintf("G%d", i), "device", "pump-07")
	}
	tm.clock.Advance(90 * time.Minute) // 11:30: usual
	tm.ev("vendor.deny", "actor", ann, "grant", "Gx")
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("usual hours reported: %v", kinds(fs))
	}
	tm.clock.Advance(15 * time.Hour) // 02:30
	tm.ev("access.lock_add", "actor", ann, "identity", jo)
	fs := tm.take()
	if kinds(fs) != KindApproverOffHours || fs[0].Evidence["hour"] != "2" || !strings.Contains(fs[0].Evidence["usual_hours"], "10") {
		t.Fatalf("findings %+v", fs)
	}
	// The button and the gateway itself are never judged.
	tm.ev("vendor.approve", "actor", "local:button")
	tm.ev("vendor.revoke", "actor", "system:expiry")
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("non-person actors judged: %v", kinds(fs))
	}
}

// TestRateLimit: a flood of one finding's cause yields one finding per
// window and a summary with the count, never one per cause.
func TestRateLimit(t *testing.T) {
	tm := newTestMonitor(t, nil)
	for range 10000 {
		tm.ev("clinical.refused", "device", "pump-07", "claimed", pump, "remote", "192.0.2.9:1", "reason", "untrusted")
	}
	fs := tm.take()
	// One unknown issuer, one burst per source, identity and device.
	per := map[string]int{}
	for _, f := range fs {
		per[f.Kind]++
	}
	if len(fs) != 4 || per[KindUnknownIssuer] != 1 || per[KindAuthBurst] != 3 {
		t.Fatalf("flood gave %q", kinds(fs))
	}
	tm.clock.Advance(14 * time.Minute)
	tm.Tick(tm.clock.Now())
	if fs := tm.take(); len(fs) != 0 {
		t.Fatalf("summary before the window ended: %v", kinds(fs))
	}
	tm.clock.Advance(time.Minute)
	tm.Tick(tm.clock.Now())
	fs = tm.take()
	var issuer *Finding
	for i := range fs {
		if fs[i].Kind == KindUnknownIssuer {
			issuer = &fs[i]
		}
	}
	if issuer == nil || issuer.Count != 9999 || !issuer.First.Equal(monday10) || !issuer.Last.Equal(monday10) {
		t.Fatalf("summary %+v", fs)
	}
	// Many distinct keys are bounded too.
	for i := range 3 * maxLimitKeys {
		tm.ev("clinical.refused", "device", "pump-07", "claimed", fmt.Sprintf("spiffe://hospital.example/svc/x%d", i), "remote", "192.0.2.9:1", "reason", "lifetime_too_long")
	}
	if n := len(tm.take()); n > maxLimitKeys+4 {
		t.Fatalf("%d findings from distinct keys", n)
	}
}
