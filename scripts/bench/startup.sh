#!/usr/bin/env bash
# startup.sh: `wardgate run` from exec to serving (READY=1 on the notify
# socket, and the first TLS handshake on a clinical listener), development
# CA, loopback; median of STARTUP_RUNS starts (default 15) after a warm-up,
# within 90 s. Target: median <= 150 ms. Prints one markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The gateway binary as `make build` makes it.
CGO_ENABLED=0 go build -trimpath -tags "${WARDGATE_TAGS-nethttpomithttp2}" $(scripts/gcflags.sh) -ldflags '-s -w' -o "$tmp/wardgate" ./cmd/wardgate
go build -o "$tmp/startupbench" ./scripts/bench/startupbench
go build -o "$tmp/benchtable" ./scripts/benchtable
timeout 120 "$tmp/startupbench" -bin "$tmp/wardgate" -n "${STARTUP_RUNS:-15}" -budget 90s >"$tmp/runs.txt"
"$tmp/benchtable" <"$tmp/runs.txt"
echo
echo "Target: median from exec to serving <= 150 ms."
