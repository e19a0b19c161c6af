#!/usr/bin/env bash
# fleetlock.sh: the fleet lock set with scripts/fleetsim -mode lock:
# GATEWAYS (default 1000) simulated gateways subscribed to their lock-set
# topics on one mosquitto (TLS, the fleet ACL); a two-approver fleet set is
# submitted to wardgate-central (SQLite, then PostgreSQL 15), which
# publishes it retained. Figures: submission to arrival at every online
# gateway (p99, max), connection to arrival for gateways that come online
# later, and the time until central shows every gateway's applied version.
# Targets: online p99 <= 2 s; a late gateway within 2 s of its birth.
# Prints one markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/wardgate-central" ./cmd/wardgate-central
go build -o "$tmp/fleetsim" ./scripts/fleetsim
go build -o "$tmp/benchtable" ./scripts/benchtable
for db in sqlite postgres; do
	timeout 300 "$tmp/fleetsim" -mode lock -central "$tmp/wardgate-central" -db "$db" -gateways "${GATEWAYS:-1000}" >>"$tmp/runs.txt"
done
"$tmp/benchtable" <"$tmp/runs.txt"
echo
echo "Targets: a fleet lock set reaches every online gateway with p99 <= 2 s, and a gateway that comes online later within 2 s."
echo "fleetsim, mosquitto and central share the machine's cores."
