package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
)

// Pump simulates a legacy infusion pump speaking a plaintext line protocol
// on its clinical port, with a telnet-like service console on another port.
// It has no authentication at all: that is the point of the gateway.
//
// Clinical commands (one per line): ID?, STATUS?, RATE <ml/h>, QUIT.
// Service console: LOG, VERSION, QUIT.
type Pump struct {
	Serial, Firmware string

	mu   sync.Mutex
	rate float64
	wg   sync.WaitGroup
}

// NewPump returns a pump running at 5 ml/h.
func NewPump(serial, firmware string) *Pump {
	return &Pump{Serial: serial, Firmware: firmware, rate: 5}
}

// ServeClinical answers the clinical protocol on l until ctx ends.
func (p *Pump) ServeClinical(ctx context.Context, l net.Listener) {
	p.serve(ctx, l, p.clinical)
}

// ServeService answers the service console on l until ctx ends.
func (p *Pump) ServeService(ctx context.Context, l net.Listener) {
	p.serve(ctx, l, p.service)
}

// Wait returns when every connection handler has returned.
func (p *Pump) Wait() { p.wg.Wait() }

func (p *Pump) serve(ctx context.Context, l net.Listener, handle func(io.ReadWriter)) {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var conns sync.Map
	defer conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		conns.Store(c, nil)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer conns.Delete(c)
			defer c.Close()
			handle(c)
		}()
	}
}

func (p *Pump) clinical(rw io.ReadWriter) {
	sc := bufio.NewScanner(rw)
	sc.Buffer(make([]byte, 256), 256)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "ID?":
			fmt.Fprintf(rw, "ACME AP-200 SN %s FW %s\r\n", p.Serial, p.Firmware)
		case "STATUS?":
			p.mu.Lock()
			fmt.Fprintf(rw, "RUNNING RATE %.1f ML/H\r\n", p.rate)
			p.mu.Unlock()
		case "RATE":
			v, err := strconv.ParseFloat(strings.Join(f[1:], ""), 64)
			if err != nil || v < 0 || v > 999 {
				fmt.Fprint(rw, "ERR RANGE\r\n")
				continue
			}
			p.mu.Lock()
			p.rate = v
			p.mu.Unlock()
			fmt.Fprintf(rw, "OK RATE %.1f\r\n", v)
		case "QUIT":
			return
		default:
			fmt.Fprint(rw, "ERR UNKNOWN\r\n")
		}
	}
}

func (p *Pump) service(rw io.ReadWriter) {
	fmt.Fprint(rw, "AP-200 service console\r\n> ")
	sc := bufio.NewScanner(rw)
	sc.Buffer(make([]byte, 256), 256)
	for sc.Scan() {
		switch strings.ToUpper(strings.TrimSpace(sc.Text())) {
		case "LOG":
			fmt.Fprint(rw, "E-104 occlusion cleared\r\nI-001 self test passed\r\n> ")
		case "VERSION":
			fmt.Fprintf(rw, "firmware %s\r\n> ", p.Firmware)
		case "QUIT":
			fmt.Fprint(rw, "bye\r\n")
			return
		default:
			fmt.Fprint(rw, "? LOG VERSION QUIT\r\n> ")
		}
	}
}

// Monitor simulates a patient monitor on an RS-232 line: it answers
// "VITALS?" with one line of made-up vital signs. Serve runs on the device
// side of a pseudo-terminal.
type Monitor struct{}

// Serve answers on rw until it fails or is closed.
func (Monitor) Serve(rw io.ReadWriter) {
	sc := bufio.NewScanner(rw)
	sc.Buffer(make([]byte, 256), 256)
	for sc.Scan() {
		switch strings.TrimSpace(sc.Text()) {
		case "VITALS?":
			fmt.Fprint(rw, "HR 72 SPO2 98 NIBP 118/76\r\n")
		case "":
		default:
			fmt.Fprint(rw, "NAK\r\n")
		}
	}
}
