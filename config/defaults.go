package config

import (
	"net"
	"path/filepath"
	"time"
)

// Default values, applied by applyDefaults and documented on the fields.
const (
	DefaultStateDir        = "/var/lib/wardgate"
	DefaultVendorListen    = ":8443"
	DefaultLifetime        = 4 * time.Hour
	DefaultRekeyEvery      = 6
	DefaultMetricsInterval = 60 * time.Second
	DefaultOutboxMax       = 256 << 20
	DefaultMaxSession      = time.Hour
	DefaultRequestTimeout  = 15 * time.Minute
	// DefaultInjectTimeout bounds an injected login dialogue.
	DefaultInjectTimeout = 15 * time.Second
	// DefaultInjectNewline ends every send of an injected login.
	DefaultInjectNewline = "crlf"

	// gateway.vendor_limits
	DefaultVendorMaxConnections   = 128
	DefaultVendorMaxPerSource     = 8
	DefaultVendorMaxPending       = 32
	DefaultVendorHandshakeTimeout = 10 * time.Second
	DefaultVendorHandshakeRate    = 50

	// gateway.recordings
	DefaultRecordingsMaxBytes     = 1 << 30
	DefaultRecordingsMaxFreeShare = 25 // percent
	DefaultRecordingsFsyncEvery   = 2 * time.Second
	// DefaultUploadMaxRate bounds recordings uploads (bytes per second).
	DefaultUploadMaxRate = 256 << 10

	// DefaultOutboxReserveDivisor: mqtt.outbox_reserve defaults to
	// outbox_max / DefaultOutboxReserveDivisor.
	DefaultOutboxReserveDivisor = 4

	// monitor
	DefaultFindingWindow     = 15 * time.Minute
	DefaultBurstPerSource    = 20
	DefaultBurstPerIdentity  = 10
	DefaultBurstWindow       = 5 * time.Minute
	DefaultBaselineWindow    = 14 * 24 * time.Hour
	DefaultAnomalyFactor     = 4
	DefaultAnomalyMinBytes   = 64 << 10
	DefaultLinkProbe         = 60 * time.Second
	DefaultNeighbourInterval = 30 * time.Second
	DefaultControlsInterval  = 5 * time.Minute
	DefaultTelemetryWithin   = 15 * time.Minute
	DefaultApproverLearn     = 20
	// update (signed self-update)
	DefaultUpdateInstallDir    = "/usr/lib/wardgate"
	DefaultUpdateHealthTimeout = 2 * time.Minute

	// AdminSocketName is the admin socket's file name in the state
	// directory when gateway.admin_socket is not set.
	AdminSocketName = "admin.sock"
)

// applyDefaults fills every unset field that has a default. It is the only
// place defaults are set.
func applyDefaults(c *Config) {
	g := &c.Gateway
	setS(&g.StateDir, DefaultStateDir)
	setS(&g.VendorListen, DefaultVendorListen)
	g.AdminSocket = defaultAdminSocket(g.StateDir, g.AdminSocket)
	setD(&g.DrainTimeout, 10*time.Second)
	vl := &g.VendorLimits
	setI(&vl.MaxConnections, DefaultVendorMaxConnections)
	setI(&vl.MaxPerSource, DefaultVendorMaxPerSource)
	setI(&vl.MaxPending, DefaultVendorMaxPending)
	setD(&vl.HandshakeTimeout, DefaultVendorHandshakeTimeout)
	setI(&vl.HandshakeRate, DefaultVendorHandshakeRate)
	rec := &g.Recordings
	if rec.MaxBytes == 0 {
		rec.MaxBytes = DefaultRecordingsMaxBytes
	}
	if rec.MaxFreeShare == 0 {
		rec.MaxFreeShare = DefaultRecordingsMaxFreeShare
	}
	setD(&rec.FsyncEvery, DefaultRecordingsFsyncEvery)
	setS(&c.Update.InstallDir, DefaultUpdateInstallDir)
	setD(&c.Update.HealthTimeout, DefaultUpdateHealthTimeout)
	if up := rec.Upload; up != nil && up.MaxRate == 0 {
		up.MaxRate = DefaultUploadMaxRate
	}

	id := &c.Identity
	setS(&id.CA, "step")
	setD(&id.Lifetime, DefaultLifetime)
	if id.RekeyEvery == 0 {
		id.RekeyEvery = DefaultRekeyEvery
	}

	// mqtt.broker is the one-item shorthand of mqtt.brokers.
	if c.MQTT.Broker != "" && len(c.MQTT.Brokers) == 0 {
		c.MQTT.Brokers = []string{c.MQTT.Broker}
	} else if c.MQTT.Broker == "" && len(c.MQTT.Brokers) > 0 {
		c.MQTT.Broker = c.MQTT.Brokers[0]
	}
	setD(&c.MQTT.MetricsInterval, DefaultMetricsInterval)
	if c.MQTT.OutboxMax == 0 {
		c.MQTT.OutboxMax = DefaultOutboxMax
	}
	if c.MQTT.OutboxReserve == 0 {
		c.MQTT.OutboxReserve = c.MQTT.OutboxMax / DefaultOutboxReserveDivisor
	}

	h := &c.HAL
	setS(&h.Driver, "periph")
	if h.Driver == "periph" {
		setS(&h.Watchdog, "/dev/watchdog")
	}
	setS(&h.Watchdog, "none")
	setD(&h.LongPress, 2*time.Second)

	mon := &c.Monitor
	setD(&mon.FindingWindow, DefaultFindingWindow)
	setI(&mon.FailedHandshakes.PerSource, DefaultBurstPerSource)
	setI(&mon.FailedHandshakes.PerIdentity, DefaultBurstPerIdentity)
	setD(&mon.FailedHandshakes.Window, DefaultBurstWindow)
	setD(&mon.BaselineWindow, DefaultBaselineWindow)
	if mon.AnomalyFactor == 0 {
		mon.AnomalyFactor = DefaultAnomalyFactor
	}
	if mon.AnomalyMinBytes == 0 {
		mon.AnomalyMinBytes = DefaultAnomalyMinBytes
	}
	setD(&mon.LinkProbe, DefaultLinkProbe)
	setD(&mon.NeighbourInterval, DefaultNeighbourInterval)
	setD(&mon.ControlsInterval, DefaultControlsInterval)
	setD(&mon.TelemetryWithin, DefaultTelemetryWithin)
	setI(&mon.ApproverLearn, DefaultApproverLearn)

	for i := range c.Vendors {
		setD(&c.Vendors[i].MaxCertLifetime, 12*time.Hour)
	}
	for i := range c.Devices {
		dev := &c.Devices[i]
		if s := dev.Link.Serial; s != nil {
			*s = s.WithDefaults()
		}
		cl := &dev.Clinical
		setD(&cl.MaxCertLifetime, 24*time.Hour)
		if cl.MaxConnections == 0 {
			cl.MaxConnections = 64
		}
		if cl.MaxPerSource == 0 {
			cl.MaxPerSource = 16
		}
		setD(&cl.HandshakeTimeout, 10*time.Second)
		setD(&cl.IdleTimeout, 30*time.Minute)
		setD(&cl.MaxLifetime, 24*time.Hour)
		for j := range dev.Accounts {
			if in := dev.Accounts[j].Inject; in != nil {
				setD(&in.Timeout, DefaultInjectTimeout)
				setS(&in.Newline, DefaultInjectNewline)
			}
		}
		if v := dev.Vendor; v != nil {
			setD(&v.MaxSession, DefaultMaxSession)
			setD(&v.RequestTimeout, DefaultRequestTimeout)
			setS(&v.OffHours, OffHoursRefuse)
			if v.Console != nil && v.Console.Serial != nil {
				*v.Console.Serial = v.Console.Serial.WithDefaults()
			}
			if v.Host == "" && dev.Link.TCP != "" {
				if host, _, err := net.SplitHostPort(dev.Link.TCP); err == nil {
					v.Host = host
				}
			}
		}
	}
}

// defaultAdminSocket returns the admin socket path: socket when set, else
// STATE_DIR/admin.sock when stateDir is absolute, else "" (validation then
// reports the relative state_dir). Load and AdminSocket both use it.
func defaultAdminSocket(stateDir, socket string) string {
	if socket == "" && filepath.IsAbs(stateDir) {
		return filepath.Join(stateDir, AdminSocketName)
	}
	return socket
}

func setI(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setS(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setD(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}
