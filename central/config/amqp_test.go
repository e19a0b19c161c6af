package config

import (
	"strings"
	"testing"
)

const amqpBase = "version: 1\ncentral: {id: c1, trust_domain: hospital.example}\ntls: {cert: a, key: b, ca: c}\n"

func TestAMQPDefaults(t *testing.T) {
	c, err := Parse("c.yaml", []byte(amqpBase+"amqp: {urls: [\"amqps://r1:5671\", \"amqp://127.0.0.1:5672\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.AMQP.Queue != DefaultAMQPQueue || c.AMQP.Prefetch != DefaultAMQPPrefetch || len(c.AMQP.URLs) != 2 {
		t.Fatalf("defaults not applied: %+v", c.AMQP)
	}
}

func TestAMQPProblems(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"no urls", "amqp: {queue: q}\n", []string{"amqp.urls: missing"}},
		{"with mqtt", "mqtt: {brokers: [\"mqtts://b:8883\"]}\namqp: {urls: [\"amqps://r1\"]}\n", []string{"mqtt.brokers", "use one source"}},
		{"plain remote", "amqp: {urls: [\"amqp://rabbit.hospital.example:5672\"]}\n", []string{"amqp.urls[0]", "except on loopback"}},
		{"scheme", "amqp: {urls: [\"mqtts://r1:8883\"]}\n", []string{"amqp.urls[0]", `scheme "mqtts"`}},
		{"not a url", "amqp: {urls: [\"::\"]}\n", []string{"amqp.urls[0]", "not a URL"}},
		{"queue chars", "amqp: {urls: [\"amqps://r1\"], queue: \"a b\"}\n", []string{"amqp.queue", "not a queue name"}},
		{"queue reserved", "amqp: {urls: [\"amqps://r1\"], queue: amq.x}\n", []string{"amqp.queue", "reserved"}},
		{"prefetch", "amqp: {urls: [\"amqps://r1\"], prefetch: -1}\n", []string{"amqp.prefetch", "outside"}},
		{"unknown key", "amqp: {urls: [\"amqps://r1\"], exchange: x}\n", []string{`unknown key "exchange"`}},
		{"neither", "", []string{"mqtt.brokers: missing", "amqp:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(amqpBase+tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
