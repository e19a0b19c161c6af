package clinical

import (
	"context"
	"fmt"
)

// ProbeLinks checks the link of every TCP device that has no live session
// with a TCP connect (closed at once, no payload sent), so that the link
// state is known before any clinical client connects. A device with a live
// session is skipped: its session proves the link, and a legacy device that
// takes one connection at a time must not be disturbed. The result is
// reported like a dial for a session: EvLinkUp/EvLinkDown on a change.
// Serial links are watched by their own reader.
func (s *Server) ProbeLinks(ctx context.Context) {
	s.mu.Lock()
	devs := s.deviceList()
	s.mu.Unlock()
	for _, d := range devs {
		if ctx.Err() != nil {
			return
		}
		if d.serial != nil || d.o.TCP == "" || d.st.live.Load() > 0 {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, d.o.DialTimeout)
		c, err := s.o.Dial(dctx, "tcp", d.o.TCP)
		cancel()
		if ctx.Err() != nil {
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if err != nil {
			d.setLink(linkDown, fmt.Sprintf("the link probe cannot reach the device at %s: %v (check the device's power, cable and address)", d.o.TCP, err))
			continue
		}
		_ = c.Close()
		d.setLink(linkUp, "")
	}
}
