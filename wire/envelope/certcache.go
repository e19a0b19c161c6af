package envelope

import (
	"crypto/x509"
	"sync"
)

// maxCertCache bounds the parsed certificates kept by certCache: a
// gateway's chain is a leaf and an intermediate or two, so this covers a
// fleet of several thousand gateways.
const maxCertCache = 8192

// certCache keeps parsed x5chain certificates keyed by their exact DER, so
// that a gateway's repeated chain is parsed once instead of once per
// message. Only certificates that parsed are kept; a hit returns the same
// *x509.Certificate as the first parse, which callers treat as read-only
// (as they must any parsed certificate they share). Trust is not cached
// here: every message's signature is checked and its chain goes to the
// caller's ChainVerifier. Safe for concurrent use.
var certCache = struct {
	sync.RWMutex
	m map[string]*x509.Certificate
}{m: map[string]*x509.Certificate{}}

// parseCert returns the parsed certificate of der, from the cache when it
// was parsed before.
func parseCert(der []byte) (*x509.Certificate, error) {
	certCache.RLock()
	c, ok := certCache.m[string(der)] // no allocation for the lookup
	certCache.RUnlock()
	if ok {
		return c, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	certCache.Lock()
	if len(certCache.m) >= maxCertCache {
		// Evict an eighth, chosen by map order (pseudo-random): a fleet
		// larger than the cache still hits most of the time.
		n := maxCertCache / 8
		for k := range certCache.m {
			delete(certCache.m, k)
			if n--; n == 0 {
				break
			}
		}
	}
	certCache.m[string(der)] = c
	certCache.Unlock()
	return c, nil
}
