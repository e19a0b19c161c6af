package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// sysStats samples the host's CPU, memory and disk use from /proc and
// statfs. proc is the procfs root ("/proc" outside tests). Safe for
// concurrent use.
type sysStats struct {
	proc string

	mu                sync.Mutex
	lastBusy, lastAll uint64
}

type sysSample struct {
	CPUPercent          float64
	MemUsed, MemTotal   uint64
	DiskUsed, DiskTotal uint64
}

// sample reads the counters. CPU use is measured since the previous call
// (0 on the first). Errors leave the affected fields zero.
func (s *sysStats) sample(diskPath string) (sysSample, error) {
	var out sysSample
	var errs []string
	if busy, all, err := readCPU(filepath.Join(s.proc, "stat")); err == nil {
		s.mu.Lock()
		if s.lastAll != 0 && all > s.lastAll {
			out.CPUPercent = 100 * float64(busy-s.lastBusy) / float64(all-s.lastAll)
		}
		s.lastBusy, s.lastAll = busy, all
		s.mu.Unlock()
	} else {
		errs = append(errs, err.Error())
	}
	if used, total, err := readMem(filepath.Join(s.proc, "meminfo")); err == nil {
		out.MemUsed, out.MemTotal = used, total
	} else {
		errs = append(errs, err.Error())
	}
	var st unix.Statfs_t
	if err := unix.Statfs(diskPath, &st); err == nil {
		bs := uint64(st.Bsize)
		out.DiskTotal = st.Blocks * bs
		out.DiskUsed = (st.Blocks - st.Bfree) * bs
	} else {
		errs = append(errs, fmt.Sprintf("statfs %s: %v", diskPath, err))
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("system metrics: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// readCPU returns busy and total jiffies from the aggregate "cpu" line.
func readCPU(path string) (busy, all uint64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("%s: no aggregate cpu line", path)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q is not a counter", path, v)
		}
		all += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, all, nil
}

// readMem returns used (total - available) and total bytes.
func readMem(path string) (used, total uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var avail uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "MemTotal":
			total = n * 1024
		case "MemAvailable":
			avail = n * 1024
		}
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("%s: no MemTotal", path)
	}
	return total - min(avail, total), total, nil
}
