package demo

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is the demo's embedded MQTT broker: mutual TLS, and an ACL that
// lets a gateway identity write only under wardgate/v1/ITS-ID/ and read only
// its own cmd topic, as a hospital's broker ACL would. Central identities
// (spiffe://TD/svc/central) read everything and publish commands.
type Broker struct {
	srv  *mqtt.Server
	Addr string // host:port it listens on
}

// StartBroker listens on l's address (127.0.0.1:0 style) with tlsConf
// (which must require and verify client certificates).
func StartBroker(addr string, tlsConf *tls.Config, trustDomain string, log *slog.Logger) (*Broker, error) {
	// Find a free port first so the URL is known before Serve.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	addr = l.Addr().String()
	l.Close()
	srv := mqtt.New(&mqtt.Options{Logger: log.With("component", "demo-broker"), InlineClient: false})
	if err := srv.AddHook(&aclHook{td: trustDomain}, nil); err != nil {
		return nil, err
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "mqtts", Address: addr, TLSConfig: tlsConf})); err != nil {
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		return nil, err
	}
	return &Broker{srv: srv, Addr: addr}, nil
}

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

type aclHook struct {
	mqtt.HookBase
	td string
}

func (h *aclHook) ID() string { return "wardgate-demo-acl" }

func (h *aclHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// peerURI returns the URI SAN of the client's verified certificate.
func peerURI(cl *mqtt.Client) string {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return ""
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 {
		return ""
	}
	return leafURI(st.VerifiedChains[0][0])
}

func leafURI(c *x509.Certificate) string {
	if len(c.URIs) != 1 {
		return ""
	}
	return c.URIs[0].String()
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return peerURI(cl) != ""
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	uri := peerURI(cl)
	prefix := "spiffe://" + h.td + "/"
	switch {
	case strings.HasPrefix(uri, prefix+"gateway/"):
		id := strings.TrimPrefix(uri, prefix+"gateway/")
		own := "wardgate/v1/" + id + "/"
		if write {
			return strings.HasPrefix(topic, own) && topic != own+"cmd" && topic != own+"lockset"
		}
		// Its commands, and the retained fleet lock sets (docs/scale.md).
		return topic == own+"cmd" || topic == own+"lockset" || topic == "wardgate/v1/fleet/lockset" ||
			(strings.HasPrefix(topic, "wardgate/v1/site/") && strings.HasSuffix(topic, "/lockset"))
	case uri == prefix+"svc/central":
		return !write || strings.HasSuffix(topic, "/cmd") || strings.HasSuffix(topic, "/lockset")
	}
	return false
}
