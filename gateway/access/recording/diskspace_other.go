//go:build !(linux || darwin || freebsd)

package recording

import "errors"

// diskAvailable is not implemented here; a share limit then falls back to
// StoreOptions.MaxBytes (see StoreOptions.DiskAvailable).
func diskAvailable(string) (int64, error) {
	return 0, errors.New("free disk space is not available on this platform")
}
