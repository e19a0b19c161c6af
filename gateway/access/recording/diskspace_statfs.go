//go:build linux || darwin || freebsd

package recording

import (
	"fmt"
	"syscall"
)

// diskAvailable returns the bytes available to unprivileged users on the
// filesystem holding dir (statfs f_bavail * f_bsize).
func diskAvailable(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil // field types differ per platform
}
