package ingest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
)

// BenchmarkSharedIngest is BenchmarkIngest in shared mode on PostgreSQL:
// one instance alone (the cost of the seq marks and merged rows), and two
// instances on one database with the messages dealt out in turn, as
// RabbitMQ hands a queue to two consumers (on one machine they share its
// cores).
func BenchmarkSharedIngest(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			dsn := storetest.Postgres(b)
			pki := certstest.NewMini(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var ins []*Ingester
			var wg sync.WaitGroup
			for k := range n {
				st, err := store.Open(ctx, dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				in, err := New(ctx, Options{Store: st, Verify: envelope.RootsVerifier(pki.Roots()), AMQP: &AMQPOptions{Name: fmt.Sprint("central-", k)}})
				if err != nil {
					b.Fatal(err)
				}
				ins = append(ins, in)
				wg.Add(1)
				go func() { defer wg.Done(); _ = in.Run(ctx) }()
			}
			const gws = 100
			var fleet []gw
			for i := range gws {
				id := pki.Gateway(b, fmt.Sprintf("gw-%03d", i))
				fleet = append(fleet, gw{id: fmt.Sprintf("gw-%03d", i), key: id.Key, chain: id.Chain})
			}
			type msg struct {
				topic string
				data  []byte
			}
			msgs := make([]msg, b.N)
			for i := range msgs {
				g := fleet[i%gws]
				topic, data := g.msg(b, 1, uint64(i/gws+1), time.Now(), envelope.KindEvent, wire.Event{Kind: "clinical.refused",
					Attrs: map[string]string{"device": "pump-07", "peer": "spiffe://hospital.example/svc/x"}})
				msgs[i] = msg{topic, data}
			}
			stored := func() uint64 {
				var s uint64
				for _, in := range ins {
					s += in.Stats().Stored
				}
				return s
			}
			b.ResetTimer()
			var feed sync.WaitGroup
			for k, in := range ins {
				feed.Add(1)
				go func() {
					defer feed.Done()
					for i := k; i < len(msgs); i += n {
						in.handle(ctx, msgs[i].topic, msgs[i].data, nil)
					}
				}()
			}
			feed.Wait()
			deadline := time.Now().Add(60 * time.Second)
			for stored() < uint64(b.N) {
				if time.Now().After(deadline) {
					b.Fatalf("stored %d of %d", stored(), b.N)
				}
				time.Sleep(5 * time.Millisecond) // two processing loops; polled
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			cancel()
			wg.Wait()
		})
	}
}
