// Package commands is wardgate-central's durable fleet command queue and
// lock-set publisher.
//
// A command is signed by an approver on the operator's machine
// (wire/command.SignTo) and submitted over HTTPS with the same approver
// certificate (Service.Submit). Central never trusts the client: it checks
// the signature and the signer's chain, that the submitting TLS identity
// is the signer, the command's structure, that a permissive command
// (approve, unlock, clear-tamper) names exactly one gateway, that a lock is
// not addressed to the fleet (that is a lock set's job), and the validity
// (not expired, at most 5 minutes or, for lock, end-session, revoke and
// deny, 7 days).
//
// It then stores the command and one target per addressed gateway (one,
// a site's, the fleet's; a gateway that appears at the site or in the
// fleet while the command is valid is added at its birth) and publishes
// it on each online target's wardgate/v1/GW/cmd, and again at each birth
// of that gateway, until the gateway's signed reply with the command's
// nonce arrives. Each target moves queued -> delivered -> applied or
// rejected, or expired when the command expires first; an expired command
// is never published.
//
// Lock sets (wire/lockset) are verified the same way (every signature, the
// approvers, two persons for the fleet), must be newer than the stored
// version of their scope, and are published retained on the scope's topic;
// every (re)connection of central publishes the newest set of each scope
// again. The gateways' authority.lockset_applied and
// authority.lockset_refused events record which version each gateway runs.
//
// A Service owns one goroutine (Run); Submit, SubmitLockSet, Observe and
// Connected are safe for concurrent use. Observe and Connected never
// block: they queue work for Run.
package commands
