// Package ingest is wardgate-central's telemetry intake. It subscribes to
// wardgate/v1/+/# over MQTT with mTLS (central's own identity), verifies
// every message with wire.InspectMessage (the code `wardgate tail` uses),
// decodes bodies into the wire types, and keeps per-gateway state:
// session, last sequence number, gaps, births and deaths (online/offline)
// and clock offset. Messages that arrive out of order are held for the
// reorder window; a sequence number still missing then is recorded as a
// gap (a finding), the gateway is marked stale and asked to resync with a
// signed rebirth and inventory command (at most once per resync interval),
// and it stays stale until the new birth and inventory arrive. A death
// whose session is not the current one is ignored. Messages that do not
// verify are stored as findings, never dropped silently.
//
// With Options.AMQP the messages come instead from a durable quorum queue
// of a RabbitMQ cluster (amqp.go), shared by several central instances:
// each message is acknowledged only after the batch that stored it
// committed, and the instances coordinate through the database
// (shared.go): seq marks so that a seq another instance stored is not a
// gap, merged gateway rows, and resync requests claimed on the row.
//
// An Ingester owns its goroutines: Run returns after they exit. Handle and
// Stats are safe for concurrent use; all per-gateway state is owned by the
// single processing goroutine.
package ingest
