package telemetry

import (
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/brokertest"
	"github.com/wardgate/wardgate/wire/envelope"
)

func waitSent(b *testing.B, p *Publisher, n uint64, within time.Duration) {
	deadline := time.Now().Add(within)
	for p.Stats().Sent < n {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d acknowledged after %s", p.Stats().Sent, n, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkPublishMosquitto: signed QoS 1 events per second into a local
// mosquitto (TLS) through the fsync outbox, from 32 producers.
func BenchmarkPublishMosquitto(b *testing.B) {
	pki := certstest.NewMini(b)
	broker := brokertest.StartMosquitto(b, pki)
	gw := pki.Gateway(b, "gw-test")
	opts := gatewayOptions(b, pki, broker.URL, "gw-test", gw, b.TempDir())
	opts.NoSync = os.Getenv("BENCH_NOSYNC") != "" // to measure what fsync costs
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	runPublisher(b, p)
	waitSent(b, p, 1, 10*time.Second) // birth
	base := p.Stats().Sent
	body := map[string]string{"grant": "G-0001", "identity": "spiffe://hospital.example/vendor/acme/bob"}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	const producers = 32
	for w := range producers {
		wg.Go(func() {
			for i := w; i < b.N; i += producers {
				if _, err := p.Event(wire.Event{Kind: "vendor.session.start", Attrs: body}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitSent(b, p, base+uint64(b.N), 120*time.Second)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkDrainBacklog: how fast a 100,000-message backlog drains after
// an outage (signing at send time, QoS 1, deletes batched).
func BenchmarkDrainBacklog(b *testing.B) {
	const backlog = 100_000
	pki := certstest.NewMini(b)
	broker := brokertest.StartMosquitto(b, pki)
	gw := pki.Gateway(b, "gw-test")
	for range b.N {
		b.StopTimer()
		broker.Stop()
		p, err := New(gatewayOptions(b, pki, broker.URL, "gw-test", gw, b.TempDir()))
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range 64 {
			wg.Go(func() {
				for i := w; i < backlog; i += 64 {
					if _, err := p.Event(wire.Event{Kind: "test.backlog"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		broker.Start()
		b.StartTimer()
		start := time.Now()
		stop := runPublisher(b, p)
		waitSent(b, p, backlog, 300*time.Second)
		b.ReportMetric(backlog/time.Since(start).Seconds(), "msgs/s")
		b.StopTimer()
		stop()
	}
}

// BenchmarkMetricsSize reports the bytes of a metrics body against the
// same content as JSON (the snapshot) and as SenML-JSON.
func BenchmarkMetricsSize(b *testing.B) {
	now := time.Unix(1764331200, 0)
	var n int
	for range b.N {
		body, err := envelope.EncodePack(wire.MetricsPack(sampleMetrics(), now))
		if err != nil {
			b.Fatal(err)
		}
		n = len(body)
	}
	js, _ := json.Marshal(sampleMetrics())
	sj, _ := json.Marshal(wire.MetricsPack(sampleMetrics(), now))
	b.ReportMetric(float64(n), "cbor-bytes")
	b.ReportMetric(float64(len(js)), "json-bytes")
	b.ReportMetric(float64(n)/float64(len(js)), "ratio-json")
	b.ReportMetric(float64(n)/float64(len(sj)), "ratio-senml-json")
}

// BenchmarkSignEnvelope: cost of encoding and signing one event envelope.
func BenchmarkSignEnvelope(b *testing.B) {
	pki := certstest.NewMini(b)
	gw := pki.Gateway(b, "gw-test")
	body, _ := wire.EventBody(wire.Event{Kind: "x", Attrs: map[string]string{"a": "b"}})
	b.ReportAllocs()
	for i := range b.N {
		payload, err := envelope.EncodePayload(&envelope.Envelope{Version: 1, Gateway: "gw-test", Seq: uint64(i), Kind: envelope.KindEvent, Body: body})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := envelope.Sign(gw.Key, gw.Chain, payload); err != nil {
			b.Fatal(err)
		}
	}
}
