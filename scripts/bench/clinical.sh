#!/usr/bin/env bash
# clinical.sh: the clinical relay side by side with direct, a plain TCP relay
# and stunnel4 (mTLS); prints one markdown table. About 1-2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Built with the gateway binary's compiler flags: the relay measured is the
# relay that ships.
go build $(scripts/gcflags.sh) -o "$tmp/clinicalbench" ./scripts/bench/clinicalbench
ulimit -n 20000 2>/dev/null || true
timeout 180 "$tmp/clinicalbench" -mb "${CLINICAL_BENCH_MIB:-128}"
