package certs

import (
	"testing"

	"github.com/wardgate/wardgate/certs/stepcatest"
	"github.com/wardgate/wardgate/internal/testnet"
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
func freePort(t *testing.T) string { return testnet.FreeAddr(t) }
