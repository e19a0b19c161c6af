package monitor

import (
	"testing"
)

// BenchmarkObserve is the monitor's cost per event on the paths that see
// many: a clinical session of a known identity (one bbolt read), a failed
// handshake of a flood (counted and rate limited), and an event the
// monitor ignores. Compare with the events' own cost in the sink (a log
// line and an fsync'ed outbox write per event).
func BenchmarkObserve(b *testing.B) {
	cases := []struct {
		name, kind string
		attrs      map[string]string
	}{
		{"clinical_session_known", "clinical.session_start", map[string]string{"device": "pump-07", "identity": pump, "remote": "10.1.0.5:4000"}},
		{"handshake_failed_flood", "clinical.handshake_failed", map[string]string{"device": "pump-07", "remote": "192.0.2.5:4000", "reason": "tls_protocol"}},
		{"ignored", "clinical.session_end", map[string]string{"device": "pump-07"}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			tm := newTestMonitor(b, nil)
			tm.Observe(tm.clock.Now(), tc.kind, tc.attrs) // learn
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				tm.Observe(tm.clock.Now(), tc.kind, tc.attrs)
			}
		})
	}
}
