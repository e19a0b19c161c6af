package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store"
	"github.com/wardgate/wardgate/central/store/storetest"
)

func TestRecordings(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		cose := []byte{0xd2, 0x84, 0x00, 0xff}
		if _, err := s.Apply(ctx, func(tx *store.Tx) error {
			if err := tx.PutGateway(store.Gateway{ID: "gw-1", Site: "st-a"}); err != nil {
				return err
			}
			for i, sess := range []string{"S-1", "S-2"} {
				if err := tx.PutRecordingEnd(store.Recording{Gateway: "gw-1", Session: sess, Grant: "G", Vendor: "spiffe://h/vendor/acme/bob",
					Device: "pump-07", Seq: uint64(10 + i), Ended: t0.Add(time.Duration(i) * time.Hour), Received: t0, Hash: "AB01", EventCOSE: cose}); err != nil {
					return err
				}
			}
			// A replayed duplicate changes nothing.
			return tx.PutRecordingEnd(store.Recording{Gateway: "gw-1", Session: "S-1", Hash: "ff"})
		}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recording(ctx, "gw-1", "S-1")
		if err != nil || r.Hash != "ab01" || string(r.EventCOSE) != string(cose) || r.Site != "st-a" || r.Seq != 10 || r.Hold || !r.Reviewed.IsZero() {
			t.Fatalf("recording %+v %v", r, err)
		}
		if _, err := s.Recording(ctx, "gw-1", "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing: %v", err)
		}
		who := "spiffe://h/approver/security/ann"
		if err := s.ReviewRecording(ctx, "gw-1", "S-1", who, "", t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetRecordingHold(ctx, "gw-1", "S-2", true, who, "case 42", t0.Add(3*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.RecordingArchived(ctx, "gw-1", "S-2", 1234, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.ReviewRecording(ctx, "gw-1", "nope", who, "", t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("review of a missing recording: %v", err)
		}
		for _, c := range []struct {
			q    store.RecordingQuery
			want []string
		}{
			{store.RecordingQuery{}, []string{"S-2", "S-1"}},
			{store.RecordingQuery{Reviewed: "yes"}, []string{"S-1"}},
			{store.RecordingQuery{Reviewed: "no"}, []string{"S-2"}},
			{store.RecordingQuery{Hold: "yes"}, []string{"S-2"}},
			{store.RecordingQuery{Archived: "yes"}, []string{"S-2"}},
			{store.RecordingQuery{Vendor: "acme", Device: "pump-07", Gateway: "gw-1"}, []string{"S-2", "S-1"}},
			{store.RecordingQuery{Device: "other"}, nil},
			{store.RecordingQuery{Since: t0.Add(30 * time.Minute)}, []string{"S-2"}},
			{store.RecordingQuery{Until: t0.Add(30 * time.Minute)}, []string{"S-1"}},
		} {
			rs, err := s.Recordings(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Session)
			}
			if len(got) != len(c.want) || (len(got) > 0 && got[0] != c.want[0]) {
				t.Errorf("%+v: %v, want %v", c.q, got, c.want)
			}
		}
		holds, err := s.RecordingHolds(ctx)
		if err != nil || len(holds) != 1 || !holds["gw-1/S-2"] {
			t.Fatalf("holds %v %v", holds, err)
		}
		if err := s.SetRecordingHold(ctx, "gw-1", "S-2", false, who, "case closed", t0.Add(4*time.Hour)); err != nil {
			t.Fatal(err)
		}
		r, _ = s.Recording(ctx, "gw-1", "S-2")
		if r.Hold || r.HoldBy != who || !r.HoldAt.Equal(t0.Add(4*time.Hour)) || r.Size != 1234 {
			t.Fatalf("after clear %+v", r)
		}
		trail, err := s.RecordingAuditTrail(ctx, "gw-1", "S-2")
		if err != nil || len(trail) != 3 || trail[0].Action != store.RecordingHoldSet || trail[2].Action != store.RecordingHoldCleared || trail[2].Note != "case closed" {
			t.Fatalf("audit %+v %v", trail, err)
		}
	})
}
