#!/usr/bin/env bash
# size.sh: stripped sizes of the binaries for linux/arm64 and linux/arm
# (GOARM=7), built as `make cross` builds them (tags, scripts/gcflags.sh),
# beside the gateway binary with net/http's HTTP/2 left in and the demo
# binary. Target: the gateway binary for arm64 <= 10 MB. Prints one markdown
# table.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tags="${WARDGATE_TAGS-nethttpomithttp2}"
gcflags="$(scripts/gcflags.sh)"
build() { # FILE GOARCH TAGS PACKAGE LABEL
	GOARM=7 CGO_ENABLED=0 GOOS=linux GOARCH="$2" go build -trimpath -tags "$3" $gcflags -ldflags '-s -w' -o "$tmp/$1" "$4"
	awk -v name="$5" -v arch="$2" -v tags="${3:--}" -v b="$(stat -c %s "$tmp/$1")" \
		'BEGIN { printf "| %s | linux/%s | %s | %d | %.2f | %.2f |\n", name, arch, tags, b, b/1e6, b/1048576 }'
}
echo "| binary | platform | tags | bytes | MB | MiB |"
echo "|---|---|---|---|---|---|"
build gw-arm64 arm64 "$tags" ./cmd/wardgate "wardgate (gateway)"
build gw-arm arm "$tags" ./cmd/wardgate "wardgate (gateway)"
build gw-h2-arm64 arm64 "" ./cmd/wardgate "wardgate, HTTP/2 left in"
build demo-arm64 arm64 "$tags" ./cmd/wardgate-demo "wardgate-demo"
echo
echo "Target: the gateway binary for linux/arm64 <= 10 MB (10,000,000 bytes)."
