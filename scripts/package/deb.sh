#!/usr/bin/env bash
# deb.sh builds wardgate .deb packages for arm64 and armhf (and amd64 when
# asked) into dist/ from the binaries `make cross` leaves in bin/: the
# gateway binary only, never wardgate-demo.
#   usage: scripts/package/deb.sh [ARCH...]    (default: arm64 armhf)
set -euo pipefail
cd "$(dirname "$0")/../.."
# A release tag vX.Y.Z gives X.Y.Z; an untagged tree 0.1.0~gitHASH.
version="${VERSION:-$(git describe --tags --exact-match 2>/dev/null || echo "0.1.0~git$(git rev-parse --short HEAD 2>/dev/null || echo 0)")}"
version="${version#v}"
nfpm="${NFPM:-go tool nfpm}" # NFPM: a prebuilt nfpm binary, if any
mkdir -p dist
for arch in "${@:-arm64 armhf}"; do
	for a in $arch; do
		case "$a" in
		arm64) bin=bin/wardgate-linux-arm64 ;;
		armhf) bin=bin/wardgate-linux-arm ;;
		amd64) bin=bin/wardgate-linux-amd64 ;;
		*) echo "deb.sh: unknown architecture $a (use arm64, armhf or amd64)" >&2; exit 2 ;;
		esac
		[ -x "$bin" ] || { echo "deb.sh: $bin missing; run make cross first" >&2; exit 1; }
		mkdir -p dist/stage && cp "$bin" dist/stage/wardgate
		NFPM_ARCH="$a" NFPM_VERSION="$version" \
			$nfpm package --config scripts/package/nfpm.yaml --packager deb --target "dist/wardgate_${version}_${a}.deb"
	done
done
rm -rf dist/stage
