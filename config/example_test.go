package config_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/wardgate/wardgate/config"
)

// ExampleParse shows what `wardgate config check` prints for a file with
// mistakes: every problem at once, each with its line and field path and
// what to write instead.
func ExampleParse() {
	file := []byte(`version: 1
gateway: {id: gw-icu3-12, site: st-1, trust_domain: hospital.example}
identity: {ca: dev}
mqtt: {broker: "mqtts://broker.hospital.example:8883"}
hal: {driver: sim}
devices:
  - id: pump-07
    owner: clinical-engineering/icu
    link: {tcp: 10.20.0.7:4001}
    clinical: {listen: ":7001", allow: ["spiffe://hospital.example/svc/pump-server"]}
    vendor: {org: acme-medical, portz: [23]}
`)
	_, err := config.Parse("wardgate.yaml", file, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	var problems config.Problems
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Println(p)
		}
	}
	// Output:
	// wardgate.yaml:11: devices[0].vendor.portz: unknown key "portz"; did you mean "ports"?
	// wardgate.yaml:11: devices[0].vendor.org: "acme-medical" is not a configured vendor; add it under vendors or fix the name
	// wardgate.yaml:11: devices[0].vendor.approval: missing; say who approves vendor access: [local], [central] or [local, central]
}
