package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/certs/certstest"
	"github.com/wardgate/wardgate/wire"
	"github.com/wardgate/wardgate/wire/envelope"
)

// FuzzReceive feeds the ingest state machine messages that verify (signed
// by a trusted gateway key) but carry arbitrary sequence numbers, sessions,
// kinds and bodies, and raw bytes that do not verify: nothing may panic,
// and every batch must store.
func FuzzReceive(f *testing.F) {
	pki := certstest.NewMini(f)
	id := pki.Gateway(f, "gw-f")
	g := gw{id: "gw-f", key: id.Key, chain: id.Chain}
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+f.TempDir()+"/f.db")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	in, err := New(ctx, Options{Store: st, Verify: envelope.RootsVerifier(pki.Roots())})
	if err != nil {
		f.Fatal(err)
	}
	bb, _ := wire.BirthBody(wire.Birth{Gateway: "gw-f", DeathSeq: 3})
	ib, _ := wire.InventoryBody(wire.Inventory{Devices: []wire.Device{{ID: "d", Owner: "o"}}})
	eb, _ := wire.EventBody(wire.Event{Kind: "vendor.request", Attrs: map[string]string{"grant": "g"}})
	f.Add(uint64(1), uint64(4), uint8(0), bb, []byte(nil))
	f.Add(uint64(1), uint64(5), uint8(5), ib, []byte("garbage"))
	f.Add(uint64(2), uint64(9), uint8(4), eb, []byte{0xd2, 0x84})
	f.Add(uint64(0), uint64(3), uint8(1), []byte{0xa1, 0x66}, []byte(nil))
	kinds := []envelope.Kind{envelope.KindBirth, envelope.KindDeath, envelope.KindStatus, envelope.KindMetrics,
		envelope.KindEvent, envelope.KindInventory, envelope.KindReply}
	now := time.Now()
	f.Fuzz(func(t *testing.T, session, seq uint64, kind uint8, body, raw []byte) {
		k := kinds[int(kind)%len(kinds)]
		b := &batchWork{in: in, now: now, dirty: map[string]bool{}}
		payload, err := envelope.EncodePayload(&envelope.Envelope{Version: envelope.Version, Gateway: "gw-f", Session: session,
			Seq: seq, Time: now.UnixMilli(), Kind: k, Body: body})
		if err == nil {
			if data, err := envelope.Sign(g.key, g.chain, payload); err == nil {
				line, msg, _ := wire.InspectMessage(wire.Topic("gw-f", k), data, in.o.Verify, now)
				b.receive(item{raw: raw0(now), line: line, msg: msg})
			}
		}
		line, msg, _ := wire.InspectMessage("wardgate/v1/gw-f/event", raw, in.o.Verify, now)
		b.receive(item{raw: raw0(now), line: line, msg: msg})
		b.now = now.Add(time.Hour)
		b.housekeeping()
		if err := b.commit(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	})
}

func raw0(now time.Time) raw { return raw{received: now} }
