#!/usr/bin/env bash
# render.sh: wardgate-central page render times with 1,000 gateways and
# 1,000,000 events (BenchmarkRender in central/web): the store is seeded
# once per database (SQLite, then a throwaway PostgreSQL 15) through the
# store's write path, then each page is rendered through the real HTTP
# handler as an approver, RUNS (default 30) times after one warm-up.
# Figure: p95 per page. Target: p95 <= 200 ms. Prints one markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
go test -run '^$' -bench '^BenchmarkRender$' -benchtime "${RUNS:-30}x" -count 1 -timeout 15m ./central/web/ 2>&1 \
	| grep -E '^(Benchmark|pkg:|--- FAIL|FAIL)' >"$tmp/render.txt" || true
if grep -q FAIL "$tmp/render.txt"; then
	cat "$tmp/render.txt" >&2
	exit 1
fi
go run ./scripts/benchtable <"$tmp/render.txt"
echo
echo "Target: p95 <= 200 ms per page. Seeded: 1,000 gateways, 5,000 devices, 10,000 accounts, 10,000 grants,"
echo "1,000,000 events over 7 days, 20,000 open findings. Pages render on the same 2 cores as everything else."
