package telemetry

import (
	"testing"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire/brokertest"
)

// TestRabbitMQ runs the telemetry flows against RabbitMQ's MQTT plugin.
// One node serves every subtest because it is slow to start.
func TestRabbitMQ(t *testing.T) {
	if testing.Short() {
		t.Skip("RabbitMQ takes 10-30 s to start")
	}
	pki := certstest.NewMini(t)
	rabbit := brokertest.StartRabbit(t, pki, "gw-test", "gw-other")
	cons := startConsumer(t, pki, rabbit.URL, "")
	gw := pki.Gateway(t, "gw-test")
	p, err := New(gatewayOptions(t, pki, rabbit.URL, "gw-test", gw, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	runPublisher(t, p)

	t.Run("publish and consume", func(t *testing.T) {
		var seqs []uint64
		for range 50 {
			s, err := p.Event(wire.Event{Kind: "test.rabbit"})
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, s)
		}
		checkDelivered(t, cons, "gw-test", seqs, 30*time.Second)
	})

	t.Run("survives a broker restart", func(t *testing.T) {
		pr := produce(t, p, 300, 5*time.Millisecond)
		waitCount(t, pr, 30)
		rabbit.Stop()
		waitCount(t, pr, 100) // events keep coming while the broker is down
		rabbit.Start()
		checkDelivered(t, cons, "gw-test", pr.finish(), 90*time.Second)
	})

	t.Run("another gateway's topic is refused", func(t *testing.T) {
		alarms := make(chan Alarm, 16)
		opts := gatewayOptions(t, pki, rabbit.URL, "gw-other", gw, t.TempDir())
		opts.OnAlarm = func(a Alarm) {
			select {
			case alarms <- a:
			default:
			}
		}
		other, err := New(opts)
		if err != nil {
			t.Fatal(err)
		}
		stop := runPublisher(t, other)
		defer stop()
		if _, err := other.Event(wire.Event{Kind: "test"}); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(30 * time.Second)
		for {
			select {
			case a := <-alarms:
				if a.Kind == AlarmPublishRefused {
					return
				}
			case <-deadline:
				t.Fatalf("no publish_refused alarm (stats %+v)", other.Stats())
			}
		}
	})
	if a := cons.alerts(); len(a) != 0 {
		t.Errorf("alerts: %+v", a)
	}
}
