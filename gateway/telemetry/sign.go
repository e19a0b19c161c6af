package telemetry

import (
	"crypto"
	"crypto/x509"
	"time"

	"github.com/wardgate/wardgate/wire/command"
)

// SignCommand makes a signed command for `wardgate sign-command`: gateway
// is the addressed gateway id, name one of command.Names, ttl at most 5
// minutes. signer/chain are the approver's key and certificate chain.
func SignCommand(signer crypto.Signer, chain []*x509.Certificate, gateway, name string, args []string, now time.Time, ttl time.Duration) ([]byte, error) {
	return command.Sign(signer, chain, gateway, name, args, now, ttl)
}
