#!/usr/bin/env bash
# bench.sh runs every benchmark, each side by side with its baseline, and
# writes the tables into docs/BENCHMARKS.md (also printed). Bounded to about
# 25 minutes on a 2-core machine; medians of several runs where noisy.
# scripts/bench/*.sh: the clinical relay against its baselines, central's
# ingest (fleetsim) and page renders (BenchmarkRender, run there and skipped
# below: it seeds a million events), the stripped binary sizes for ARM, and
# startup from exec to serving.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${BENCH_OUT:-docs/BENCHMARKS.md}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)

section() { echo; echo "## $*"; echo; }

{
	echo "# Benchmarks"
	echo
	echo "Produced by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d), $(nproc) cores,"
	echo "$(go version | awk '{print $3, $4}'). Machines are shared and noisy: compare the ratios"
	echo "measured side by side in one run, not absolute figures across runs."

	for script in scripts/bench/*.sh; do
		[ -e "$script" ] || continue
		section "$(basename "$script" .sh)"
		echo '```'
		echo "\$ $script"
		echo '```'
		echo
		bash "$script" 2>"$tmp/err" || { echo "**failed:**"; echo '```'; tail -20 "$tmp/err"; echo '```'; }
	done

	section "Go benchmarks (median of 5 runs)"
	echo "\`go test -run='^\$' -bench=. -skip='^BenchmarkRender\$' -benchmem -count=5 ./certs/... ./gateway/... ./hal/... ./wire/siem/... ./wire/envelope/... ./central/...\`"
	echo
	go test -run='^$' -bench=. -skip='^BenchmarkRender$' -benchmem -count=5 -benchtime=1s -timeout 8m ./certs/... ./gateway/... ./hal/... ./wire/siem/... ./wire/envelope/... ./central/... 2>&1 \
		| grep -E '^(Benchmark|pkg:)' >"$tmp/go.txt" || true
	go run ./scripts/benchtable <"$tmp/go.txt"
	echo
	echo "Total time: $(( $(date +%s) - start )) s."
} | tee "$out"
