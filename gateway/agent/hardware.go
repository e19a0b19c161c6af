package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wardgate/wardgate/wire"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
	"github.com/wardgate/wardgate/gateway/admin"
	"github.com/wardgate/wardgate/gateway/authority"
	"github.com/wardgate/wardgate/hal"
)

// hardware connects the board to the agent: button presses approve or end
// vendor access, the tamper loop disables it, LEDs show the agent's state,
// and the watchdog is fed only while the agent's loops are alive.
type hardware struct {
	a     *Agent
	board *hal.Board

	vendorPending, vendorLive, vendorSeveral atomic.Bool
	wake                                     chan struct{}
}

func (a *Agent) setupHardware() error {
	cfg := a.cfg()
	h := cfg.HAL
	if h.Watchdog == "none" {
		h.Watchdog = ""
	}
	b, err := hal.Open(context.Background(), hal.Options{
		Driver: h.Driver, ApproveButton: h.ApproveButton, Tamper: h.Tamper, Watchdog: h.Watchdog,
		LEDs:      hal.LEDPins{OK: h.LEDs.OK, Vendor: h.LEDs.Vendor, Alarm: h.LEDs.Alarm},
		LongPress: h.LongPress.D(), Clock: a.clock, Logger: a.o.Logger,
	})
	if err != nil {
		return fmt.Errorf("hardware: %w (see docs/hardware.md; hal.driver: sim runs without hardware)", err)
	}
	a.hw = &hardware{a: a, board: b, wake: make(chan struct{}, 1)}
	return nil
}

// setVendor is the vendor broker's LED hook.
func (h *hardware) setVendor(s access.LEDState) {
	if h == nil {
		return
	}
	h.vendorPending.Store(s.Pending)
	h.vendorLive.Store(s.Live)
	h.vendorSeveral.Store(s.Several)
	h.a.indicate() // at once: the owner looks at the LED when asked to
}

func (h *hardware) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *hardware) close() error { return h.board.Close() }

func (h *hardware) notifyReady() {
	if err := h.board.Notifier.Ready(); err != nil {
		h.a.log.Warn("systemd notify READY failed", "err", err)
	}
}

func (h *hardware) notifyStopping() { _ = h.board.Notifier.Stopping() }

// temperature is the hottest thermal zone, nil when the board has none.
func (h *hardware) temperature() *float64 {
	zones, err := h.board.Temperatures()
	if err != nil || len(zones) == 0 {
		return nil
	}
	t := zones[0].Celsius
	for _, z := range zones[1:] {
		t = max(t, z.Celsius)
	}
	return &t
}

// run drives the board and reacts to its inputs until ctx ends.
func (h *hardware) run(ctx context.Context) error {
	a := h.a
	done := make(chan error, 1)
	go func() { done <- h.board.Run(ctx) }()
	hb := h.board.Kicker.Monitor("agent-inputs", 30*time.Second)
	defer hb.Stop()
	tick := a.clock.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		hb.Beat()
		select {
		case <-ctx.Done():
			return <-done
		case err := <-done:
			return err
		case <-tick.Chan():
		case p := <-h.board.Approve.Presses():
			h.press(p)
		case t := <-h.board.Tamper.Changes():
			if err := a.auth.SetTamper(t.Open); err != nil {
				a.raise("state_not_saved", "the tamper latch could not be saved to the state directory (is the disk full?): "+err.Error())
			}
			if t.Open {
				a.raise("tamper", "the enclosure was opened: vendor access is disabled until `wardgate tamper clear` or a signed clear-tamper command")
			}
			a.events.emit(t.At, "hardware.tamper", map[bool]string{true: wire.SeverityAlarm, false: wire.SeverityInfo}[t.Open],
				map[string]string{"open": fmt.Sprint(t.Open)})
			h.poke()
		}
	}
}

// press: a long press approves the one pending request (the approval
// event names it: grant, vendor, device, ports); with none or several
// pending it does nothing and the ignored-press event lists the pending
// requests. A short press while a vendor session is live ends it.
func (h *hardware) press(p hal.Press) {
	a := h.a
	if p.Long {
		g, err := a.access.ApproveByButton()
		if err != nil {
			attrs := map[string]string{"press": "long", "reason": err.Error()}
			var ids []string
			for _, r := range a.access.Snapshot().Requests {
				ids = append(ids, r.ID+" "+r.Vendor+" "+r.Device)
			}
			if len(ids) > 0 {
				attrs["pending"] = strings.Join(ids, "; ")
			}
			a.events.emit(p.Start.Add(p.Duration), "hardware.button_ignored", wire.SeverityInfo, attrs)
			return
		}
		a.log.Info("vendor request approved with the button", "grant", g.ID, "vendor", g.Vendor, "device", g.Device, "ports", g.Ports)
		return
	}
	if n, err := a.access.ButtonShortPress(); err == nil {
		a.log.Info("vendor sessions ended with the button", "sessions", n)
	} else if !errors.Is(err, access.ErrNoSession) {
		a.log.Warn("short press", "err", err)
	}
}

// indicatorLoop keeps the LEDs in line with the agent's state: it is the
// only writer of the LEDs.
func (a *Agent) indicatorLoop(ctx context.Context) error {
	tick := a.clock.NewTicker(time.Second)
	defer tick.Stop()
	hb := a.hw.board.Kicker.Monitor("agent-indicators", 30*time.Second)
	defer hb.Stop()
	for {
		hb.Beat()
		a.indicate()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.Chan():
		case <-a.hw.wake:
		}
	}
}

// indicate sets the LEDs from the agent's state.
func (a *Agent) indicate() {
	if a.hw == nil || a.tel == nil || a.ident == nil {
		return // still being set up; the indicator loop catches up
	}
	ind := hal.Indication{
		Degraded:      !a.tel.Stats().Connected || a.certLeft() < 0.25,
		VendorPending: a.hw.vendorPending.Load(),
		VendorLive:    a.hw.vendorLive.Load(),
		VendorSeveral: a.hw.vendorSeveral.Load(),
		Alarm:         len(a.alarmList()) > 0,
	}
	if err := a.hw.board.Indicate(ind); err != nil {
		a.log.Warn("LEDs", "err", err)
	}
}

// clearTamper re-enables vendor access after the enclosure was checked.
func (a *Agent) clearTamper(actor access.Actor) error {
	if a.hw.board.Tamper.Open() {
		return fmt.Errorf("the enclosure loop is still open; close the enclosure first: %w", authority.ErrTamperActive)
	}
	if err := a.auth.ClearTamper(actor); err != nil {
		return err
	}
	a.clear("tamper")
	a.hw.poke()
	return nil
}

// halRoutes: the board's state, and the simulated inputs.
func (a *Agent) halRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/hal", func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, http.StatusOK, a.hw.board.State())
	})
	sim := func(w http.ResponseWriter) *hal.Sim {
		if a.hw.board.Sim == nil {
			admin.WriteError(w, http.StatusConflict, "this gateway has real hardware (hal.driver: periph); press the physical button instead")
		}
		return a.hw.board.Sim
	}
	mux.HandleFunc("POST /v1/hal/press", func(w http.ResponseWriter, r *http.Request) {
		s := sim(w)
		if s == nil {
			return
		}
		var in struct {
			Name string `json:"name"`
			Hold string `json:"hold"`
		}
		if err := admin.ReadJSON(r, &in); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		hold, err := config.ParseDuration(in.Hold)
		if err != nil || hold > time.Minute {
			admin.WriteError(w, http.StatusBadRequest, "hold: give a duration up to 1m, e.g. 3s")
			return
		}
		if err := s.Press(r.Context(), in.Name, hold); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]any{"pressed": in.Name, "hold": hold.String()})
	})
	mux.HandleFunc("POST /v1/hal/tamper", func(w http.ResponseWriter, r *http.Request) {
		s := sim(w)
		if s == nil {
			return
		}
		var in struct {
			Open bool `json:"open"`
		}
		if err := admin.ReadJSON(r, &in); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := s.SetTamper(r.Context(), in.Open); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]bool{"open": in.Open})
	})
	mux.HandleFunc("POST /v1/identity/renew", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Rekey bool `json:"rekey"`
		}
		if err := admin.ReadJSON(r, &in); err != nil {
			admin.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		serial, err := a.renewNow(r.Context(), in.Rekey)
		if err != nil {
			admin.WriteError(w, http.StatusBadGateway, err.Error())
			return
		}
		admin.WriteJSON(w, http.StatusOK, map[string]string{"serial": serial})
	})
}
