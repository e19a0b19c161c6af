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
		if v := dev.Vendor; v != nil {
			setD(&v.MaxSession, DefaultMaxSession)
			setD(&v.RequestTimeout, DefaultRequestTimeout)
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
