package release

import (
	"bufio"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
)

// JournalFile is the update journal under STATE_DIR: `wardgate update
// apply` appends every step; the agent emits them as update.STEP events
// (signed, sequenced) when it starts, then empties it.
const JournalFile = "update-journal.jsonl"

// JournalEntry is one line of the journal.
type JournalEntry struct {
	Time  time.Time         `json:"time"`
	Step  string            `json:"step"`
	Attrs map[string]string `json:"attrs"`
}

// AppendJournal appends one step to the journal at path (mode 0600). The
// file takes the owner of its directory (the state directory's, the
// agent's user), since `update apply` runs as root and the agent must read
// and remove it.
func AppendJournal(path string, e JournalEntry) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Dir(path)); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			_ = f.Chown(int(sys.Uid), int(sys.Gid))
		}
	}
	b, err := json.Marshal(e)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// DrainJournal returns the journal's entries (at most 1000; malformed lines
// are skipped) and removes it. It first renames the journal away, so that
// a step appended meanwhile starts a new journal rather than being lost.
// No journal: nil, nil.
func DrainJournal(path string) ([]JournalEntry, error) {
	draining := path + ".draining"
	if err := os.Rename(path, draining); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(draining); serr != nil {
				return nil, nil
			}
			// A drain interrupted earlier: finish it.
		} else {
			return nil, err
		}
	}
	path = draining
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var out []JournalEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() && len(out) < 1000 {
		var e JournalEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Step != "" {
			out = append(out, e)
		}
	}
	f.Close()
	return out, os.Remove(path)
}

// Platform is this binary's os and arch as manifests name them: GOARCH,
// with the GOARM level for arm ("arm/v7").
func Platform() (goos, arch string) {
	arch = runtime.GOARCH
	if arch == "arm" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					arch += "/v" + s.Value[:1]
				}
			}
		}
	}
	return runtime.GOOS, arch
}
