package config

import "time"

// Defaults, applied by Parse to keys that are absent.
const (
	DefaultListen         = "127.0.0.1:8444"
	DefaultDB             = "sqlite:/var/lib/wardgate-central/central.db"
	DefaultKeepAlive      = 30 * time.Second
	DefaultReorderWindow  = 10 * time.Second
	DefaultResyncInterval = time.Minute
	DefaultOfflineAfter   = 10 * time.Minute
	DefaultRetention      = 400 * 24 * time.Hour
	DefaultOperatorCert   = 24 * time.Hour
	// DefaultArchiveRetention keeps recordings six years.
	DefaultArchiveRetention  = 2190 * 24 * time.Hour
	DefaultArchivePruneEvery = time.Hour
	DefaultArchiveMaxSize    = 4 << 30
)

func applyDefaults(c *Config) {
	str := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	dur := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	str(&c.Central.Listen, DefaultListen)
	str(&c.Central.DB, DefaultDB)
	dur(&c.Central.OperatorCertLifetime, DefaultOperatorCert)
	dur(&c.MQTT.KeepAlive, DefaultKeepAlive)
	dur(&c.Ingest.ReorderWindow, DefaultReorderWindow)
	dur(&c.Ingest.ResyncInterval, DefaultResyncInterval)
	dur(&c.Ingest.OfflineAfter, DefaultOfflineAfter)
	dur(&c.Retention.Events, DefaultRetention)
	dur(&c.Retention.Findings, DefaultRetention)
	dur(&c.Retention.Sessions, DefaultRetention)
	if a := c.Archive; a != nil {
		dur(&a.Retention.Default, DefaultArchiveRetention)
		dur(&a.PruneEvery, DefaultArchivePruneEvery)
		if a.MaxSize == 0 {
			a.MaxSize = DefaultArchiveMaxSize
		}
	}
}
