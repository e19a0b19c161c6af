package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wardgate/wardgate/central/store/storetest"
)

// TestEventHoursBackfill: the event_hours migration counts the events a database
// already holds.
func TestEventHoursBackfill(t *testing.T) {
	storetest.Each(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		all := migrations
		for i, m := range all {
			if strings.Contains(m, "CREATE TABLE event_hours") {
				migrations = all[:i] // the schema before event_hours
			}
		}
		s, err := Open(ctx, dsn)
		migrations = all
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
		for i := range 5 {
			if _, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO events (gateway, session, seq, time_ms, received_ms, kind) VALUES (?,1,?,?,?,'k')`),
				"gw-1", i+1, at.Add(time.Duration(i)*20*time.Minute).UnixMilli(), at.UnixMilli()); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s, err = Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ph, err := s.EventsPerHour(ctx, at)
		if err != nil || len(ph) != 2 || ph[0].N != 3 || ph[1].N != 2 {
			t.Fatalf("per hour %+v %v", ph, err)
		}
	})
}
