package access

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/wardgate/wardgate/gateway/access/recording"
)

// isAPI reports whether req is a call of the vendors' status API (rather
// than a CONNECT).
func isAPI(req *ConnectRequest) bool {
	return (req.Method == "GET" || req.Method == "POST") && strings.HasPrefix(req.Target, "/v1/")
}

// validateVendorExtras checks a device's console and injections.
func validateVendorExtras(d Device) error {
	if d.Console != nil {
		if d.Console.Port == "" {
			return fmt.Errorf("access: device %s: console without a serial port", d.ID)
		}
		if d.ClinicalSerial != "" && d.Console.Port == d.ClinicalSerial {
			return fmt.Errorf("access: device %s: the console port %s is the clinical serial link, never shared with a vendor", d.ID, d.Console.Port)
		}
	}
	if d.Host == "" && len(d.Ports) > 0 {
		return fmt.Errorf("access: device %s: service ports without a host", d.ID)
	}
	seen := map[int]bool{}
	for _, in := range d.Inject {
		if err := in.validate(); err != nil {
			return fmt.Errorf("access: device %s: %w", d.ID, err)
		}
		if seen[in.Port] {
			return fmt.Errorf("access: device %s: two injected accounts for port %s", d.ID, PortName(in.Port))
		}
		seen[in.Port] = true
	}
	return nil
}

// openDevice dials a service port or opens the serial console (one session
// at a time per console).
func (b *Broker) openDevice(ctx context.Context, dev Device, port int, grant string) (io.ReadWriteCloser, *refusal) {
	if port == ConsolePort {
		b.mu.Lock()
		if b.consoles == nil {
			b.consoles = map[string]string{}
		}
		if _, busy := b.consoles[dev.Console.Port]; busy {
			b.mu.Unlock()
			return nil, &refusal{409, CodeConsoleBusy, fmt.Sprintf("the console of %s is in use by another session; try again when it ended", dev.ID), grant}
		}
		b.consoles[dev.Console.Port] = grant
		b.mu.Unlock()
		p, err := b.o.OpenSerial(*dev.Console)
		if err != nil {
			b.releaseConsole(dev, port)
			b.log.Warn("device console open failed", "device", dev.ID, "err", err)
			return nil, &refusal{502, CodeUnreachable, fmt.Sprintf("the console of %s cannot be opened (cable or adapter missing?); tell the device owner", dev.ID), grant}
		}
		return p, nil
	}
	dctx, cancel := context.WithTimeout(ctx, b.o.DialTimeout)
	dc, err := b.o.Dial(dctx, "tcp", net.JoinHostPort(dev.Host, strconv.Itoa(port)))
	cancel()
	if err != nil {
		b.log.Warn("device dial failed", "device", dev.ID, "port", port, "err", err)
		return nil, &refusal{502, CodeUnreachable, fmt.Sprintf("device %s port %d does not answer", dev.ID, port), grant}
	}
	return dc, nil
}

// releaseConsole frees dev's console after a console session.
func (b *Broker) releaseConsole(dev Device, port int) {
	if port != ConsolePort || dev.Console == nil {
		return
	}
	b.mu.Lock()
	delete(b.consoles, dev.Console.Port)
	b.mu.Unlock()
}

// CodeConsoleBusy refuses a console already in use (409).
const CodeConsoleBusy = "console_busy"

// CodeInjectFailed refuses a tunnel whose service-account login failed (502).
const CodeInjectFailed = "inject_failed"

// noteEncrypted records, on the first bytes the vendor sends, that the
// tunnel carries TLS or SSH (the recording then holds ciphertext).
func (s *session) noteEncrypted(p []byte) {
	var what string
	switch {
	case len(p) >= 3 && p[0] == 0x16 && p[1] == 0x03 && p[2] <= 0x04:
		what = "tls"
	case strings.HasPrefix(string(p), "SSH-2.0-"), strings.HasPrefix(string(p), "SSH-1.99-"):
		what = "ssh"
	default:
		return
	}
	if err := s.rec.Note(s.b.clock.Now(), recording.NoteEncrypted, what+": the vendor's bytes are encrypted end to end; this recording holds ciphertext"); err != nil && !errors.Is(err, recording.ErrClosed) {
		s.b.log.Warn("recording note failed", "session", s.info.ID, "err", err)
	}
}
