package recording

import (
	"slices"
	"strings"
	"time"
)

// EndedRecording is a recording whose session ended (its end marker is
// written) and that is not being written.
type EndedRecording struct {
	Session string
	Path    string
	EndSeq  uint64 // telemetry seq of the signed session-end event
	Ended   time.Time
}

// EndedRecordings lists the ended recordings, oldest end first, for the
// uploader to archive at central.
func (s *Store) EndedRecordings() []EndedRecording {
	s.mu.Lock()
	var out []EndedRecording
	for id, e := range s.recs {
		if e.ended && e.live == nil && !e.creating {
			out = append(out, EndedRecording{Session: id, Path: s.Path(id), EndSeq: e.seq, Ended: e.end})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b EndedRecording) int {
		if c := a.Ended.Compare(b.Ended); c != 0 {
			return c
		}
		return strings.Compare(a.Session, b.Session)
	})
	return out
}
