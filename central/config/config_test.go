package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	gwconfig "github.com/wardgate/wardgate/config"
)

func TestExampleIsValid(t *testing.T) {
	c, err := Parse("example.yaml", []byte(Example))
	if err != nil {
		t.Fatalf("example invalid:\n%v", err)
	}
	if c.Central.ID != "central-1" || c.Ingest.ReorderWindow.D() != 10*time.Second || c.Retention.Events.D() != 400*24*time.Hour {
		t.Fatalf("example decoded wrong: %+v", c)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("c.yaml", []byte(`version: 1
central: {id: c1, trust_domain: hospital.example}
tls: {cert: a, key: b, ca: c}
mqtt: {brokers: ["mqtts://b:8883"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Central.Listen != DefaultListen || c.Central.DB != DefaultDB || c.Ingest.ResyncInterval.D() != DefaultResyncInterval {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestProblems(t *testing.T) {
	base := "version: 1\ncentral: {id: c1, trust_domain: hospital.example}\ntls: {cert: a, key: b, ca: c}\nmqtt: {brokers: [\"mqtts://b:8883\"]}\n"
	cases := []struct {
		name, yaml string
		want       []string // substrings, each in the error
	}{
		{"empty", "", []string{"empty"}},
		{"syntax", "version: [1\n", []string{"not valid YAML"}},
		{"no version", strings.Replace(base, "version: 1\n", "", 1), []string{"version: missing"}},
		{"bad version", strings.Replace(base, "version: 1", "version: 2", 1), []string{":1: version: 2 is not supported"}},
		{"unknown key", base + "extra: 1\n", []string{`:5: unknown key "extra"`}},
		{"unknown nested key", base + "ingest: {reorder: 5s}\n", []string{`:5: unknown key "reorder"`}},
		{"bad id", strings.Replace(base, "id: c1", "id: C_1", 1), []string{"central.id", "DNS label"}},
		{"no id", strings.Replace(base, "id: c1, ", "", 1), []string{"central.id: missing"}},
		{"no td", strings.Replace(base, ", trust_domain: hospital.example", "", 1), []string{"central.trust_domain: missing"}},
		{"bad td", strings.Replace(base, "hospital.example", "Hospital!", 1), []string{"not a trust domain"}},
		{"bad listen", base + "central2: 1\n", []string{"unknown key"}},
		{"bad db", strings.Replace(base, "trust_domain: hospital.example", "trust_domain: hospital.example, db: mysql://x", 1), []string{":2: central.db"}},
		{"empty sqlite", strings.Replace(base, "trust_domain: hospital.example", "trust_domain: hospital.example, db: \"sqlite:\"", 1), []string{"needs a file path"}},
		{"listen", strings.Replace(base, "trust_domain: hospital.example", "trust_domain: hospital.example, listen: nope", 1), []string{"central.listen"}},
		{"pprof not host:port", strings.Replace(base, "trust_domain: hospital.example", "trust_domain: hospital.example, pprof_listen: nope", 1), []string{"central.pprof_listen", "HOST:PORT"}},
		{"pprof not loopback", strings.Replace(base, "trust_domain: hospital.example", "trust_domain: hospital.example, pprof_listen: \"0.0.0.0:6060\"", 1), []string{"central.pprof_listen", "loopback"}},
		{"no tls", strings.Replace(base, "tls: {cert: a, key: b, ca: c}\n", "", 1), []string{"tls.cert: missing", "tls.key: missing", "tls.ca: missing"}},
		{"no brokers", strings.Replace(base, "mqtt: {brokers: [\"mqtts://b:8883\"]}\n", "", 1), []string{"mqtt.brokers: missing"}},
		{"plain broker", strings.Replace(base, "mqtts://b:8883", "tcp://b:1883", 1), []string{"mqtt.brokers[0]", "only connects with TLS"}},
		{"bad broker", strings.Replace(base, "mqtts://b:8883", "::", 1), []string{"not a broker URL"}},
		{"bad duration", base + "ingest: {reorder_window: soon}\n", []string{":5:"}},
		{"window range", base + "ingest: {reorder_window: 1h}\n", []string{"ingest.reorder_window", "outside"}},
		{"resync range", base + "ingest: {resync_interval: 1ms}\n", []string{"ingest.resync_interval"}},
		{"offline range", base + "ingest: {offline_after: 1s}\n", []string{"ingest.offline_after"}},
		{"keepalive range", base + "mqtt2: 1\n", []string{"unknown key"}},
		{"operator lifetime", strings.Replace(base, "trust_domain: hospital.example", "trust_domain: hospital.example, operator_cert_lifetime: 90d", 1), []string{"central.operator_cert_lifetime"}},
		{"retention", base + "retention: {events: 1h}\n", []string{"retention.events", "less than a day"}},
		{"siem format", base + "siem: {format: xml}\n", []string{"siem", "xml"}},
		{"siem syslog without queue", base + "siem: {syslog: \"tcp://127.0.0.1:6514\"}\n", []string{"siem", "queue"}},
		{"siem unknown key", base + "siem: {fromat: cef}\n", []string{`unknown key "fromat"`}},
		{"all at once", "version: 3\ncentral: {id: X}\nfoo: 1\n", []string{"version", "central.id", "unknown key", "tls.cert", "mqtt.brokers"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, gwconfig.ErrInvalid) {
				t.Errorf("error is not config.ErrInvalid: %T", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
