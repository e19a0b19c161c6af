package front

import (
	"sort"
	"sync"
	"time"
)

// Folded is one report of a Folder: the first occurrence of a (source,
// reason) in a window is reported at once with Count 1; the others in the
// same window are reported together when the window ends, Count telling how
// many.
type Folded struct {
	Source string // "*" when the Folder ran out of keys and merged sources
	Reason string
	Count  int
	First  time.Time
	Last   time.Time
}

// Folder bounds reports of repeated refusals: per (source, reason), at most
// one report at once and one summary per window. It holds at most MaxKeys
// keys; beyond that new sources are merged under source "*", so memory stays
// bounded whatever a flood sends. The zero value is not usable: set Window.
type Folder struct {
	Window  time.Duration
	MaxKeys int // default 1024

	mu   sync.Mutex
	keys map[folderKey]*folderState
}

type folderKey struct{ source, reason string }

type folderState struct {
	start       time.Time // window start
	count       int       // folded (not yet reported) in this window
	first, last time.Time
}

// Note records one occurrence at now. It returns true when the caller
// should report this occurrence itself (the first in its window).
func (f *Folder) Note(now time.Time, source, reason string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[folderKey]*folderState{}
	}
	k := folderKey{source, reason}
	st, ok := f.keys[k]
	if !ok {
		maxKeys := f.MaxKeys
		if maxKeys <= 0 {
			maxKeys = 1024
		}
		if len(f.keys) >= maxKeys {
			k.source = "*"
			st, ok = f.keys[k]
		}
		if !ok {
			f.keys[k] = &folderState{start: now}
			return true
		}
	}
	if now.Sub(st.start) >= f.Window && st.count == 0 {
		st.start = now
		return true
	}
	if st.count == 0 {
		st.first = now
	}
	st.count++
	st.last = now
	return false
}

// Flush returns the summaries of windows that ended by now (sorted by
// source and reason) and forgets keys that were quiet for a whole window.
func (f *Folder) Flush(now time.Time) []Folded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Folded
	for k, st := range f.keys {
		if now.Sub(st.start) < f.Window {
			continue
		}
		if st.count > 0 {
			out = append(out, Folded{Source: k.source, Reason: k.reason, Count: st.count, First: st.first, Last: st.last})
			st.count, st.start = 0, now
			continue
		}
		delete(f.keys, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source < out[j].Source
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}
