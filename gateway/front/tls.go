package front

import (
	"crypto/tls"
	"time"
)

// CipherSuites are the TLS 1.2 suites every listener accepts: ECDHE key
// exchange and AEAD only. TLS 1.3 suites are all AEAD and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Curves are the key-exchange groups offered, fastest first.
var Curves = []tls.CurveID{tls.X25519, tls.CurveP256}

// ServerConfig returns the gateway's server TLS policy: TLS >= 1.2, the
// AEAD suites above, a client certificate required (its verification is the
// caller's: set VerifyConnection or check after the handshake), the
// gateway's certificate from getCert and the injected clock for validity
// checks. Callers may add fields (NextProtos, GetConfigForClient) but must
// not weaken these.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), now func() time.Time) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     CipherSuites,
		CurvePreferences: Curves,
		GetCertificate:   getCert,
		ClientAuth:       tls.RequireAnyClientCert,
		Time:             now,
	}
}
