package ingest

import (
	"crypto/x509"
	"sync"
	"time"

	"github.com/wardgate/wardgate/wire/envelope"
)

// verifyCacheTTL is how long a verified signer chain is trusted without
// verifying it again (never past the leaf's NotAfter).
const verifyCacheTTL = time.Minute

// maxVerifyCache bounds the cache; it is emptied when full.
const maxVerifyCache = 50_000

// cachedVerifier remembers chains that verified, keyed by their DER, so
// that a gateway's stream of messages costs one chain verification a
// minute instead of one per message. The signature of every message is
// still checked (by envelope.Verify) and failures are never cached. Safe
// for concurrent use.
func cachedVerifier(v envelope.ChainVerifier) envelope.ChainVerifier {
	type entry struct {
		id    string
		until time.Time
	}
	var mu sync.Mutex
	cache := map[string]entry{}
	return func(chain []*x509.Certificate, now time.Time) (string, error) {
		if len(chain) == 0 {
			return v(chain, now)
		}
		key := make([]byte, 0, 2048)
		for _, c := range chain {
			key = append(key, c.Raw...)
			key = append(key, 0)
		}
		mu.Lock()
		e, ok := cache[string(key)]
		mu.Unlock()
		if ok && now.Before(e.until) && !now.Before(chain[0].NotBefore) {
			return e.id, nil
		}
		id, err := v(chain, now)
		if err != nil {
			return "", err
		}
		until := now.Add(verifyCacheTTL)
		if chain[0].NotAfter.Before(until) {
			until = chain[0].NotAfter
		}
		mu.Lock()
		if len(cache) >= maxVerifyCache {
			clear(cache)
		}
		cache[string(key)] = entry{id: id, until: until}
		mu.Unlock()
		return id, nil
	}
}
