package certs

import (
	"net"
	"testing"

	"github.com/wardgate/wardgate/certs/stepcatest"
)

// The real step-ca harness lives in certs/stepcatest so that the CLI's
// end-to-end tests use the same one.
type (
	stepCA       = stepcatest.StepCA
	stepCAConfig = stepcatest.Config
)

func newStepCA(t *testing.T, c stepCAConfig) *stepCA { return stepcatest.New(t, c) }

func newTestPKI(t *testing.T) *stepcatest.PKI { return stepcatest.NewPKI(t) }

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
