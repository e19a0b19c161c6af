package hal

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Notifier sends sd_notify(3) messages to systemd. A Notifier with no socket
// (not started by systemd with Type=notify) does nothing. It is safe for
// concurrent use; each message is one datagram on a fresh connection.
type Notifier struct {
	socket   string
	watchdog time.Duration
}

// NotifierFromEnv reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID through
// getenv (os.Getenv in production). WATCHDOG_USEC is honoured only when
// WATCHDOG_PID is unset or equals pid, as systemd documents.
func NotifierFromEnv(getenv func(string) string, pid int) *Notifier {
	n := &Notifier{socket: getenv("NOTIFY_SOCKET")}
	if us, err := strconv.ParseUint(getenv("WATCHDOG_USEC"), 10, 63); err == nil && us > 0 {
		if p := getenv("WATCHDOG_PID"); p == "" || p == strconv.Itoa(pid) {
			n.watchdog = time.Duration(us) * time.Microsecond
		}
	}
	return n
}

// Enabled reports whether there is a socket to notify.
func (n *Notifier) Enabled() bool { return n != nil && n.socket != "" }

// WatchdogTimeout is systemd's WatchdogSec for this process, 0 when none.
// Send WATCHDOG=1 at least twice per timeout.
func (n *Notifier) WatchdogTimeout() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Notify sends one state message such as "READY=1". It is a no-op when not
// Enabled.
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	name := n.socket
	if name[0] == '@' {
		name = "\x00" + name[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("hal: notify systemd at %s: %w (%w)", n.socket, err, ErrNotify)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("hal: notify systemd at %s: %w (%w)", n.socket, err, ErrNotify)
	}
	return nil
}

// Ready tells systemd start-up is complete (READY=1).
func (n *Notifier) Ready() error { return n.Notify("READY=1") }

// Stopping tells systemd a clean shutdown has begun (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1") }

// Watchdog feeds systemd's software watchdog (WATCHDOG=1).
func (n *Notifier) Watchdog() error { return n.Notify("WATCHDOG=1") }
