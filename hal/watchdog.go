package hal

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WatchdogDevice is a hardware watchdog: once opened it resets the machine
// unless it is kept alive within its timeout. Implementations are safe for
// concurrent use.
type WatchdogDevice interface {
	// SetTimeout asks for a timeout and returns the one the device applied
	// (drivers round to what the hardware supports).
	SetTimeout(d time.Duration) (time.Duration, error)
	// KeepAlive restarts the countdown.
	KeepAlive() error
	// MagicClose disarms the watchdog (writes 'V', then closes) on a clean
	// shutdown. Later calls return nil. Without it, closing or dying leaves
	// the watchdog armed and the machine resets.
	MagicClose() error
}

// DevWatchdog is a Linux watchdog character device such as /dev/watchdog,
// driven by ioctl (WDIOC_SETTIMEOUT, WDIOC_GETTIMEOUT, WDIOC_KEEPALIVE).
type DevWatchdog struct {
	path string

	mu sync.Mutex
	f  *os.File // nil once closed
}

// OpenWatchdog opens the device write-only, which arms it.
func OpenWatchdog(path string) (*DevWatchdog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("hal: open watchdog %s: %w (%w); check hal.watchdog, that the watchdog driver is loaded and that no other process (e.g. systemd's RuntimeWatchdogSec or watchdogd) holds it", path, err, ErrWatchdog)
	}
	return &DevWatchdog{path: path, f: f}, nil
}

func (w *DevWatchdog) fd() (int, error) {
	if w.f == nil {
		return -1, fmt.Errorf("hal: watchdog %s: %w", w.path, ErrClosed)
	}
	return int(w.f.Fd()), nil
}

// SetTimeout implements WatchdogDevice. Timeouts are whole seconds, at least 1.
func (w *DevWatchdog) SetTimeout(d time.Duration) (time.Duration, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fd, err := w.fd()
	if err != nil {
		return 0, err
	}
	secs := max(int((d+time.Second-1)/time.Second), 1)
	if err := unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, secs); err != nil {
		return 0, fmt.Errorf("hal: watchdog %s: set timeout %ds: %w (%w); is it a watchdog device?", w.path, secs, err, ErrWatchdog)
	}
	got, err := unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT)
	if err != nil {
		return 0, fmt.Errorf("hal: watchdog %s: read timeout: %w (%w)", w.path, err, ErrWatchdog)
	}
	return time.Duration(got) * time.Second, nil
}

// KeepAlive implements WatchdogDevice.
func (w *DevWatchdog) KeepAlive() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fd, err := w.fd()
	if err != nil {
		return err
	}
	if _, err := unix.IoctlGetInt(fd, unix.WDIOC_KEEPALIVE); err != nil {
		return fmt.Errorf("hal: watchdog %s: keep-alive: %w (%w)", w.path, err, ErrWatchdog)
	}
	return nil
}

// MagicClose implements WatchdogDevice.
func (w *DevWatchdog) MagicClose() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	_, werr := w.f.Write([]byte("V"))
	cerr := w.f.Close()
	w.f = nil
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("hal: watchdog %s: magic close: %w (%w); the watchdog may stay armed and reset the machine", w.path, err, ErrWatchdog)
	}
	return nil
}
