#!/usr/bin/env bash
# central.sh: wardgate-central ingest with scripts/fleetsim: GATEWAYS
# (default 1000) simulated gateways with real keys publish signed messages
# into one mosquitto (TLS, ACLs); central verifies and stores them on
# SQLite and on PostgreSQL 15, RUNS (default 3) times each. Figures (medians):
# stored msgs/s for a burst with the CPU each process spent per message
# (central, mosquitto, the simulated fleet), and the publish-to-stored p99
# at 1,000 msgs/s. Targets: >= 5,000 msgs/s, p99 <= 1 s. Prints one
# markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/wardgate-central" ./cmd/wardgate-central
go build -o "$tmp/fleetsim" ./scripts/fleetsim
go build -o "$tmp/benchtable" ./scripts/benchtable
for _ in $(seq "${RUNS:-3}"); do
	for db in sqlite postgres; do
		timeout 300 "$tmp/fleetsim" -central "$tmp/wardgate-central" -db "$db" -gateways "${GATEWAYS:-1000}" \
			-burst "${BURST:-30000}" -rate 1000 -for 10s >>"$tmp/runs.txt"
	done
done
"$tmp/benchtable" <"$tmp/runs.txt"
echo
echo "Targets: >= 5,000 msgs/s stored on each database; publish-to-stored p99 <= 1 s at 1,000 msgs/s."
echo "fleetsim and central share the machine's cores (signing and verifying both run here)."
