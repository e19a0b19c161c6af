package brokertest

// MosquittoFleetACL is MosquittoACL plus read access for gateways to the
// retained lock-set topics (see wire/lockset): the fleet's, every site's
// (mosquitto cannot tell a gateway's site; the set names its scope and the
// gateway ignores other sites') and its own. Central already reads and
// writes wardgate/v1/#; only central may write the lock-set topics. So a
// gateway writes only the topics of its message kinds (wire.Topic), not
// wardgate/v1/GW/#, which would let it replace the retained set on its own
// lock-set topic (it cannot forge one, but it could drop central's); and no
// gateway may be named "fleet" or "site".
const MosquittoFleetACL = `# gateways: CN = gateway id = %u
pattern write wardgate/v1/%u/birth
pattern write wardgate/v1/%u/death
pattern write wardgate/v1/%u/status
pattern write wardgate/v1/%u/metrics
pattern write wardgate/v1/%u/event
pattern write wardgate/v1/%u/inventory
pattern write wardgate/v1/%u/cmd/reply
pattern read wardgate/v1/%u/cmd
pattern read wardgate/v1/%u/lockset
pattern read wardgate/v1/fleet/lockset
pattern read wardgate/v1/site/+/lockset

user central
topic readwrite wardgate/v1/#
`
