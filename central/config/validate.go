package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire/siem"

	gwconfig "github.com/wardgate/wardgate/config"
)

var (
	labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	siteRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	tdRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$`)
)

func validate(c *Config, file string, lines map[string]int) gwconfig.Problems {
	var ps gwconfig.Problems
	add := func(path, format string, args ...any) {
		line := 0
		for p := path; ; {
			if l, ok := lines[p]; ok {
				line = l
				break
			}
			i := strings.LastIndexAny(p, ".[")
			if i < 0 {
				line = lines[""]
				break
			}
			p = p[:i]
		}
		ps = append(ps, gwconfig.Problem{File: file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Version != 1 {
		if _, ok := lines["version"]; !ok {
			add("version", "missing; write `version: 1` as the first line")
		} else {
			add("version", "%d is not supported; this wardgate-central reads version 1", c.Version)
		}
	}
	if c.Central.ID == "" {
		add("central.id", "missing; name this instance, e.g. central-1")
	} else if !labelRe.MatchString(c.Central.ID) {
		add("central.id", "%q is not a DNS label (a-z, 0-9 and -, at most 63)", c.Central.ID)
	}
	if c.Central.TrustDomain == "" {
		add("central.trust_domain", "missing; the hospital's SPIFFE trust domain, e.g. hospital.example")
	} else if !tdRe.MatchString(c.Central.TrustDomain) {
		add("central.trust_domain", "%q is not a trust domain (lower-case DNS name)", c.Central.TrustDomain)
	}
	if _, _, err := net.SplitHostPort(c.Central.Listen); err != nil {
		add("central.listen", "%q is not HOST:PORT: %v", c.Central.Listen, err)
	}
	if c.Central.PprofListen != "" {
		if host, _, err := net.SplitHostPort(c.Central.PprofListen); err != nil {
			add("central.pprof_listen", "%q is not HOST:PORT: %v", c.Central.PprofListen, err)
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			add("central.pprof_listen", "%q is not a loopback address: the profiler has no authentication, use 127.0.0.1:PORT", c.Central.PprofListen)
		}
	}
	switch {
	case strings.HasPrefix(c.Central.DB, "sqlite:"):
		if strings.TrimPrefix(c.Central.DB, "sqlite:") == "" {
			add("central.db", "sqlite: needs a file path, e.g. sqlite:/var/lib/wardgate-central/central.db")
		}
	case strings.HasPrefix(c.Central.DB, "postgres://"), strings.HasPrefix(c.Central.DB, "postgresql://"):
		if _, err := url.Parse(c.Central.DB); err != nil {
			add("central.db", "not a PostgreSQL URL: %v", err)
		}
	default:
		add("central.db", "%q is neither sqlite:PATH nor postgres://USER@HOST/DB", c.Central.DB)
	}
	for k, v := range map[string]string{"tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key, "tls.ca": c.TLS.CA} {
		if v == "" {
			add(k, "missing; central's identity is a certificate for spiffe://TD/svc/central with its key and the hospital CA bundle")
		}
	}
	switch {
	case c.AMQP != nil:
		if len(c.MQTT.Brokers) > 0 {
			add("mqtt.brokers", "set together with amqp:; use one source: amqp: when central instances share a RabbitMQ queue, mqtt.brokers otherwise")
		}
		ps = append(ps, validateAMQP(c.AMQP, add)...)
	case len(c.MQTT.Brokers) == 0:
		add("mqtt.brokers", "missing; list at least one broker, e.g. [mqtts://broker.hospital.example:8883] (or use amqp: to share a RabbitMQ queue)")
	}
	for i, b := range c.MQTT.Brokers {
		u, err := url.Parse(b)
		if err != nil || u.Host == "" {
			add(fmt.Sprintf("mqtt.brokers[%d]", i), "%q is not a broker URL like mqtts://HOST:8883", b)
			continue
		}
		switch u.Scheme {
		case "mqtts", "ssl", "tls":
		default:
			add(fmt.Sprintf("mqtt.brokers[%d]", i), "scheme %q: central only connects with TLS (mqtts://)", u.Scheme)
		}
	}
	pos := func(path string, d Duration, min, max time.Duration) {
		if d.D() < min || d.D() > max {
			add(path, "%s is outside %s..%s", d.D(), min, max)
		}
	}
	pos("central.operator_cert_lifetime", c.Central.OperatorCertLifetime, time.Hour, 30*24*time.Hour)
	pos("mqtt.keepalive", c.MQTT.KeepAlive, time.Second, 10*time.Minute)
	pos("ingest.reorder_window", c.Ingest.ReorderWindow, 100*time.Millisecond, 10*time.Minute)
	pos("ingest.resync_interval", c.Ingest.ResyncInterval, time.Second, 24*time.Hour)
	pos("ingest.offline_after", c.Ingest.OfflineAfter, 10*time.Second, 7*24*time.Hour)
	for k, d := range map[string]Duration{"retention.events": c.Retention.Events, "retention.findings": c.Retention.Findings, "retention.sessions": c.Retention.Sessions} {
		if d.D() < 24*time.Hour {
			add(k, "%s is less than a day; audit data must outlive an incident review", d.D())
		}
	}
	if a := c.Archive; a != nil {
		switch {
		case a.Dir == "":
			add("archive.dir", "missing; the directory that holds the recordings, e.g. /var/lib/wardgate-central/recordings")
		case !filepath.IsAbs(a.Dir):
			add("archive.dir", "%q is not an absolute path; write it from /", a.Dir)
		}
		if a.Retention.Default.D() < 24*time.Hour {
			add("archive.retention.default", "%s is less than a day; recordings must outlive an incident review (default 2190d)", a.Retention.Default.D())
		}
		for site, d := range a.Retention.Sites {
			if !siteRe.MatchString(site) {
				add("archive.retention.sites."+site, "%q is not a site id (letters, digits, '.', '_' and '-')", site)
			}
			if d.D() < 24*time.Hour {
				add("archive.retention.sites."+site, "%s is less than a day; recordings must outlive an incident review", d.D())
			}
		}
		pos("archive.prune_every", a.PruneEvery, time.Minute, 7*24*time.Hour)
		if a.MaxSize < 1<<20 || a.MaxSize > 1<<40 {
			add("archive.max_size", "%d bytes is outside 1MiB..1TiB", a.MaxSize)
		}
	}
	if c.SIEM != nil {
		if err := c.SIEM.Check(siem.OutputOptions{Name: func(k string) string { return "siem." + k }}); err != nil {
			add("siem", "%v", err)
		}
	}
	return ps
}

var queueRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,255}$`)

func validateAMQP(a *AMQP, add func(path, format string, args ...any)) gwconfig.Problems {
	if len(a.URLs) == 0 {
		add("amqp.urls", "missing; list the RabbitMQ nodes, e.g. [amqps://rabbit1.hospital.example:5671, amqps://rabbit2.hospital.example:5671]")
	}
	for i, raw := range a.URLs {
		path := fmt.Sprintf("amqp.urls[%d]", i)
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			add(path, "%q is not a URL like amqps://HOST:5671", raw)
			continue
		}
		switch u.Scheme {
		case "amqps":
		case "amqp":
			if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
				add(path, "plain amqp:// to %s: central connects with TLS (amqps://) except on loopback", u.Hostname())
			}
		default:
			add(path, "scheme %q: use amqps://HOST:5671", u.Scheme)
		}
	}
	switch {
	case !queueRe.MatchString(a.Queue):
		add("amqp.queue", "%q is not a queue name (letters, digits, . _ : -, at most 255)", a.Queue)
	case strings.HasPrefix(a.Queue, "amq."):
		add("amqp.queue", "%q: names starting with amq. are reserved by RabbitMQ", a.Queue)
	}
	if a.Prefetch < 1 || a.Prefetch > 65535 {
		add("amqp.prefetch", "%d is outside 1..65535", a.Prefetch)
	}
	return nil
}
