package agent

import (
	"testing"
	"time"

	"github.com/wardgate/wardgate/config"
	"github.com/wardgate/wardgate/gateway/access"
)

// TestAccessDevicesConsoleAndInject: the configuration's console, request
// timeout, clinical serial port and injected accounts reach the broker's
// device table.
func TestAccessDevicesConsoleAndInject(t *testing.T) {
	text := `version: 1
gateway: {id: gw-t, site: lab, trust_domain: hospital.example, state_dir: /var/lib/wardgate}
identity: {ca: dev}
mqtt: {broker: "mqtts://broker.example:8883"}
hal: {driver: sim}
vendors:
  - {org: acme, identities: ["spiffe://hospital.example/vendor/acme/*"]}
devices:
  - id: mon-03
    owner: ce/icu
    link: {serial: {port: /dev/ttyUSB0}}
    clinical: {listen: ":7002", allow: ["spiffe://hospital.example/svc/central"]}
    vendor:
      org: acme
      approval: [local]
      request_timeout: 5m
      console: {serial: {port: /dev/ttyUSB1, baud: 115200}}
    accounts:
      - id: mon-svc
        type: shared-password
        owner: ce/icu
        rotate_every: 90d
        inject:
          user: service
          credential: mon-svc
          newline: cr
          login:
            - {expect: 'login: ?$', send: user}
            - {expect: 'Password: ?$', send: secret}
            - {expect: '# ?$'}
`
	cfg, err := config.Parse("t.yaml", []byte(text), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ds := accessDevices(cfg)
	if len(ds) != 1 {
		t.Fatalf("%+v", ds)
	}
	d := ds[0]
	if d.Host != "" || len(d.Ports) != 0 || d.Console == nil || d.Console.Port != "/dev/ttyUSB1" || d.Console.Baud != 115200 ||
		d.ClinicalSerial != "/dev/ttyUSB0" || d.RequestTTL != 5*time.Minute {
		t.Fatalf("%+v", d)
	}
	if len(d.Inject) != 1 {
		t.Fatalf("%+v", d.Inject)
	}
	in := d.Inject[0]
	if in.Account != "mon-svc" || in.Owner != "ce/icu" || in.Port != access.ConsolePort || in.User != "service" || in.Credential != "mon-svc" ||
		in.Newline != "\r" || in.Timeout != config.DefaultInjectTimeout || len(in.Login) != 3 || !in.Login[1].Expect.MatchString("Password: ") ||
		in.Login[1].Send != access.SendSecret {
		t.Fatalf("%+v", in)
	}
}
