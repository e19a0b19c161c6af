package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
)

// BenchmarkIngest verifies and stores pre-signed event messages of 100
// gateways (no broker): central's own cost per message on each database.
func BenchmarkIngest(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		b.Run(db, func(b *testing.B) {
			dsn := storetest.SQLite(b)
			if db == "postgres" {
				dsn = storetest.Postgres(b)
			}
			pki := certstest.NewMini(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st, err := store.Open(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			changed := make(chan struct{}, 1)
			in, err := New(ctx, Options{Store: st, Verify: envelope.RootsVerifier(pki.Roots()), OnChange: func(Change) {
				select {
				case changed <- struct{}{}:
				default:
				}
			}})
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() { defer close(done); _ = in.Run(ctx) }()
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
			b.ResetTimer()
			for _, m := range msgs {
				in.Handle(ctx, m.topic, m.data)
			}
			for in.Stats().Stored < uint64(b.N) {
				select {
				case <-changed:
				case <-time.After(30 * time.Second):
					b.Fatalf("stored %d of %d", in.Stats().Stored, b.N)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			cancel()
			<-done
		})
	}
}
