package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wardgate/wardgate/wire/siem"

	"go.yaml.in/yaml/v3"

	gwconfig "github.com/wardgate/wardgate/config"
)

// Config is wardgate-central's configuration file, version 1.
type Config struct {
	Version int     `yaml:"version"`
	Central Central `yaml:"central"`
	TLS     TLS     `yaml:"tls"`
	MQTT    MQTT    `yaml:"mqtt"`
	// AMQP, when set, takes telemetry from a quorum queue of a RabbitMQ
	// cluster over AMQP 0-9-1 instead of an MQTT subscription, so that
	// several central instances share the ingest (docs/scale.md). It
	// excludes mqtt.brokers.
	AMQP      *AMQP     `yaml:"amqp"`
	Ingest    Ingest    `yaml:"ingest"`
	Retention Retention `yaml:"retention"`
	// SIEM, when set, sends every verified message and every finding on
	// to a SIEM as wardgate tail does (wire/siem: json, syslog, cef or leef
	// on stdout or a syslog TCP/TLS receiver through a disk queue, and
	// signed webhooks for vendor requests, alarms and findings).
	SIEM *siem.OutputConfig `yaml:"siem"`
	// Archive, when set, mounts the recordings archive on central.listen:
	// gateways upload vendor session recordings there (gateway.recordings.
	// upload.url), operators review and export them.
	Archive *Archive `yaml:"archive"`
	// File is the path the configuration was loaded from.
	File string `yaml:"-"`
}

// Central names this instance and where it listens and stores.
type Central struct {
	// ID names this central instance (a DNS label); it is also the MQTT
	// client id's suffix (wardgate-central-ID).
	ID          string `yaml:"id"`
	TrustDomain string `yaml:"trust_domain"`
	// Listen is the HTTPS address of the web UI, the JSON API and /metrics.
	Listen string `yaml:"listen"`
	// DB is sqlite:PATH or postgres://USER@HOST/DB?....
	DB string `yaml:"db"`
	// OperatorCertLifetime is the longest lifetime of an approver
	// certificate admitted to the web UI and API (short-lived is enforced).
	OperatorCertLifetime Duration `yaml:"operator_cert_lifetime"`
	// PprofListen, when set, serves Go's profiler (net/http/pprof) over
	// plain HTTP on this loopback HOST:PORT, for diagnosing performance.
	// Off by default; only loopback addresses are accepted.
	PprofListen string `yaml:"pprof_listen"`
}

// TLS is central's own identity (spiffe://TD/svc/central) and the trust
// bundle; used for MQTT, HTTPS and signing resync commands.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// MQTT says where telemetry arrives.
type MQTT struct {
	Brokers []string `yaml:"brokers"`
	// KeepAlive is the MQTT keepalive.
	KeepAlive Duration `yaml:"keepalive"`
}

// AMQP is the shared ingest: every central instance consumes one durable
// quorum queue bound to amq.topic (the MQTT plugin's exchange) with
// wardgate.v1.#.
type AMQP struct {
	// URLs are the cluster's nodes, amqps://HOST:5671 (central's
	// certificate, SASL EXTERNAL unless the URL names a user), tried in
	// turn; amqp:// only on loopback.
	URLs []string `yaml:"urls"`
	// Queue is the quorum queue's name, declared when missing.
	Queue string `yaml:"queue"`
	// Prefetch is how many unacknowledged messages an instance holds;
	// a message is acknowledged once it is stored.
	Prefetch int `yaml:"prefetch"`
}

// Ingest tunes ordering and resync.
type Ingest struct {
	// ReorderWindow is how long an out-of-order message is held for the
	// missing ones before the gap is recorded.
	ReorderWindow Duration `yaml:"reorder_window"`
	// ResyncInterval is the least time between two resync requests
	// (rebirth + inventory commands) to one gateway.
	ResyncInterval Duration `yaml:"resync_interval"`
	// OfflineAfter marks a gateway offline when nothing arrived for this
	// long, even without a death.
	OfflineAfter Duration `yaml:"offline_after"`
}

// Retention says how long rows are kept; 0 keeps them forever.
type Retention struct {
	Events   Duration `yaml:"events"`
	Findings Duration `yaml:"findings"`
	Sessions Duration `yaml:"sessions"`
}

// Archive is the recordings archive.
type Archive struct {
	// Dir holds the recordings, a directory per gateway (created 0700).
	Dir string `yaml:"dir"`
	// Retention says how long an archived recording is kept; recordings
	// under legal hold are kept regardless.
	Retention ArchiveRetention `yaml:"retention"`
	// PruneEvery is how often expired recordings are deleted.
	PruneEvery Duration `yaml:"prune_every"`
	// MaxSize bounds one recording, in bytes (suffixes KiB, MiB, GiB).
	MaxSize Size `yaml:"max_size"`
}

// ArchiveRetention is the retention of recordings, by site.
type ArchiveRetention struct {
	// Default applies to sites not listed in Sites.
	Default Duration `yaml:"default"`
	// Sites overrides Default per gateway site (the site a gateway's
	// birth names).
	Sites map[string]Duration `yaml:"sites"`
}

// For returns the retention of recordings from site.
func (r ArchiveRetention) For(site string) time.Duration {
	if d, ok := r.Sites[site]; ok {
		return d.D()
	}
	return r.Default.D()
}

// Duration is a duration written as 90s, 15m, 4h or 30d.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses a scalar with the gateway's duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := gwconfig.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// Size is a byte count written as 4GiB, 500MB or a plain number.
type Size int64

// UnmarshalYAML parses a scalar with the gateway's size syntax.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := gwconfig.ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*z = Size(v)
	return nil
}

// MarshalYAML writes d in the same syntax.
func (d Duration) MarshalYAML() (any, error) { return gwconfig.Duration(d).String(), nil }

// Load reads and validates path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, gwconfig.Problems{{File: path, Msg: fmt.Sprintf("cannot read the configuration: %v", err)}}
	}
	return Parse(path, data)
}

var lineRe = regexp.MustCompile(`^line (\d+): (.*)$`)

// Parse decodes data strictly, applies the defaults and validates it. The
// error is a gwconfig.Problems with every problem found.
func Parse(file string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, gwconfig.Problems{syntaxProblem(file, err)}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, gwconfig.Problems{{File: file, Msg: "the file is empty; start from `wardgate-central config example`"}}
	}
	lines := map[string]int{}
	walk(root.Content[0], "", lines)
	var probs gwconfig.Problems
	cfg := &Config{File: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, gwconfig.Problems{syntaxProblem(file, err)}
		}
		for _, e := range te.Errors {
			p := gwconfig.Problem{File: file, Msg: e}
			if m := lineRe.FindStringSubmatch(e); m != nil {
				p.Line, _ = strconv.Atoi(m[1])
				p.Msg = m[2]
				if k, ok := strings.CutPrefix(p.Msg, "field "); ok {
					k, _, _ = strings.Cut(k, " ")
					p.Msg = fmt.Sprintf("unknown key %q; see `wardgate-central config example` for the keys", k)
				}
			}
			probs = append(probs, p)
		}
	}
	applyDefaults(cfg)
	probs = append(probs, validate(cfg, file, lines)...)
	if len(probs) > 0 {
		sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
		return nil, probs
	}
	return cfg, nil
}

func syntaxProblem(file string, err error) gwconfig.Problem {
	p := gwconfig.Problem{File: file, Msg: "not valid YAML: " + err.Error()}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = "not valid YAML: " + m[2]
	}
	return p
}

// walk records the line of every mapping key path (a.b, a.list[0]).
func walk(n *yaml.Node, path string, lines map[string]int) {
	if _, ok := lines[path]; !ok {
		lines[path] = n.Line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			lines[p] = n.Content[i].Line
			walk(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			walk(c, fmt.Sprintf("%s[%d]", path, i), lines)
		}
	}
}
