package config

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// VendorConsole is a device's serial service console, which a vendor
// reaches as DEVICE:console through the vendor channel (same approval,
// time box, recording and locks). It is never the clinical link's port.
type VendorConsole struct {
	Serial *Serial `yaml:"serial"`
}

// Inject makes the gateway log in to a service account itself when a
// vendor's tunnel to Port opens: the vendor never learns the secret. The
// secret is read at each use from SecretFile (mode 0600 or stricter) or
// the systemd credential Credential; it is never recorded or logged.
type Inject struct {
	// Port is the service port (one of vendor.ports) or "console" whose
	// tunnels get the login. Optional when the device has exactly one
	// service port or only a console.
	Port string `yaml:"port"`
	// User is sent by a login step `send: user`.
	User       string `yaml:"user"`
	SecretFile string `yaml:"secret_file"`
	// Credential names a systemd credential (LoadCredential=NAME:PATH),
	// read from $CREDENTIALS_DIRECTORY/NAME.
	Credential string `yaml:"credential"`
	// Login is the dialogue: wait for Expect (a regular expression on the
	// device's output), then send user, secret, or the literal text.
	Login []LoginStep `yaml:"login"`
	// Timeout bounds the whole dialogue (default 15s, 1s to 5m).
	Timeout Duration `yaml:"timeout"`
	// Newline ends every send: crlf (default), cr or lf.
	Newline string `yaml:"newline"`
}

// LoginStep is one exchange of an injected login.
type LoginStep struct {
	Expect string `yaml:"expect"`
	Send   string `yaml:"send"`
}

// Injection limits.
const (
	MinInjectTimeout = time.Second
	MaxInjectTimeout = 5 * time.Minute
)

// Newlines maps Inject.Newline values to the bytes sent.
var Newlines = map[string]string{"crlf": "\r\n", "cr": "\r", "lf": "\n"}

// InjectPort resolves an account's inject.port on device dev: a service
// port number, or -1 for the console. ok is false when it names neither.
func InjectPort(dev *Device, in *Inject) (port int, ok bool) {
	vd := dev.Vendor
	if vd == nil {
		return 0, false
	}
	switch {
	case in.Port == "console":
		return -1, vd.Console != nil
	case in.Port == "":
		switch {
		case len(vd.Ports) == 1 && vd.Console == nil:
			return vd.Ports[0], true
		case len(vd.Ports) == 0 && vd.Console != nil:
			return -1, true
		}
		return 0, false
	}
	n, err := strconv.Atoi(in.Port)
	if err != nil || !slices.Contains(vd.Ports, n) {
		return 0, false
	}
	return n, true
}

// vendorConsole checks a device's console: a valid serial port, never a
// clinical link's port (of any device), never another device's console.
func (v *validator) vendorConsole(p string, c *Config, dev *Device, consoles map[string]string) {
	con := dev.Vendor.Console
	if con == nil {
		return
	}
	cp := p + ".vendor.console"
	if con.Serial == nil {
		v.add(cp+".serial", "missing; give the console's serial settings, e.g. {port: /dev/ttyUSB1, baud: 115200}")
		return
	}
	s := con.Serial
	sp := cp + ".serial"
	if !filepath.IsAbs(s.Port) {
		v.add(sp+".port", "%q is not a device path; use one such as /dev/ttyUSB1 or /dev/serial/by-id/...", s.Port)
	}
	for _, pr := range s.Problems() {
		if pr.Field != "port" {
			v.add(sp+"."+pr.Field, "%s", pr.Message)
		}
	}
	for _, o := range c.Devices {
		if o.Link.Serial != nil && o.Link.Serial.Port == s.Port && s.Port != "" {
			v.add(sp+".port", "%s is the clinical serial link of %s: the clinical link is never shared with a vendor; give the console its own port", s.Port, o.ID)
			return
		}
	}
	if other, dup := consoles[s.Port]; dup && s.Port != "" {
		v.add(sp+".port", "%s is already the console of %s; each console has its own port", s.Port, other)
		return
	}
	consoles[s.Port] = dev.ID
}

// inject checks an account's credential injection.
func (v *validator) inject(ap string, dev *Device, a *Account, ports map[int]string) {
	in := a.Inject
	if in == nil {
		return
	}
	ip := ap + ".inject"
	if dev.Vendor == nil {
		v.add(ip, "the device has no vendor access; injection logs a vendor in, so declare vendor: first or remove inject")
		return
	}
	port, ok := InjectPort(dev, in)
	switch {
	case !ok && in.Port == "":
		v.add(ip+".port", "missing; the device has several service ports (or ports and a console): name the one whose logins the gateway performs, e.g. 23 or console")
	case !ok:
		v.add(ip+".port", "%q is not one of this device's vendor ports or its console; use one of vendor.ports, or console", in.Port)
	default:
		if other, dup := ports[port]; dup {
			v.add(ip+".port", "port %s already has an injected account (%s); one account per port", in.Port, other)
		}
		ports[port] = a.ID
	}
	switch {
	case in.SecretFile == "" && in.Credential == "":
		v.add(ip, "no secret; set secret_file: /etc/wardgate/secrets/NAME (mode 0600) or credential: NAME (systemd LoadCredential)")
	case in.SecretFile != "" && in.Credential != "":
		v.add(ip, "both secret_file and credential are set; keep one")
	case in.SecretFile != "" && !filepath.IsAbs(in.SecretFile):
		v.add(ip+".secret_file", "%q is not an absolute path; write the full path of a 0600 file", in.SecretFile)
	case in.Credential != "" && (strings.ContainsAny(in.Credential, "/\\") || in.Credential == "." || in.Credential == ".."):
		v.add(ip+".credential", "%q is not a credential name; give the NAME of LoadCredential=NAME:PATH", in.Credential)
	}
	if len(in.Login) == 0 {
		v.add(ip+".login", "missing; describe the login dialogue, e.g. [{expect: 'login: ?$', send: user}, {expect: 'Password: ?$', send: secret}, {expect: '[$#>] ?$'}]")
	}
	for k, st := range in.Login {
		sp := fmt.Sprintf("%s.login[%d]", ip, k)
		if st.Expect == "" {
			v.add(sp+".expect", "missing; give a regular expression for the device's prompt, e.g. 'Password: ?$'")
		} else if _, err := regexp.Compile(st.Expect); err != nil {
			v.add(sp+".expect", "%q is not a regular expression: %v", st.Expect, err)
		}
		if st.Send == "user" && in.User == "" {
			v.add(sp+".send", "sends the user, but inject.user is not set")
		}
		if st.Send == "secret" && k == len(in.Login)-1 {
			v.add(sp+".send", "the secret is the last send; add a step expecting the device's prompt after it, so a refused login is seen and any echo is withheld")
		}
	}
	if t := in.Timeout.D(); t < MinInjectTimeout || t > MaxInjectTimeout {
		v.add(ip+".timeout", "%s is outside the allowed range; use between 1s and 5m (15s is usual)", in.Timeout)
	}
	if _, ok := Newlines[in.Newline]; !ok {
		v.add(ip+".newline", "%q is not a newline; use crlf, cr or lf", in.Newline)
	}
}
