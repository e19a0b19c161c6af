package siem

import (
	"path/filepath"
	"testing"
)

// BenchmarkEncode measures one record per format.
func BenchmarkEncode(b *testing.B) {
	for _, f := range Formats {
		b.Run(string(f), func(b *testing.B) {
			e := newTestEncoder(b, f)
			l := lineCases[0].line
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Encode(l); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQueuePut measures one committed (fsynced) record, and a batch
// of 64 committed together; ns/record compares the two side by side.
func BenchmarkQueuePut(b *testing.B) {
	rec := make([]byte, 600)
	b.Run("one", func(b *testing.B) {
		q, err := OpenQueue(filepath.Join(b.TempDir(), "q.db"), 0)
		if err != nil {
			b.Fatal(err)
		}
		defer q.Close()
		for b.Loop() {
			if err := q.Put(rec, false); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
	})
	b.Run("batch64", func(b *testing.B) {
		q, err := OpenQueue(filepath.Join(b.TempDir(), "q.db"), 0)
		if err != nil {
			b.Fatal(err)
		}
		defer q.Close()
		batch := make([]Record, 64)
		for i := range batch {
			batch[i] = Record{Data: rec}
		}
		for b.Loop() {
			if err := q.PutBatch(batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/record")
	})
}
