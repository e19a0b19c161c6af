#!/usr/bin/env bash
# gcflags.sh prints the compiler flags of the gateway binary, one line, for
# `go build` (the Makefile and the benchmark scripts use it, so that what is
# measured is what ships).
#
# The gateway's flash budget is 10 MB for linux/arm64. Inlining makes code
# faster where it runs per byte or per connection, and bigger everywhere. So
# every package is compiled without inlining (-l) except the hot ones below:
# the runtime, the network and the crypto primitives (AES-GCM, ECDSA, ECDH,
# hashes), x509, the clinical and vendor relays, the device links, the
# certificate checks of each handshake and the recording codec (CBOR).
# Configuration, the CLI, the admin API, telemetry, HTTP, JSON, YAML and
# crypto/tls itself (its records spend their time in AES-GCM, its handshakes
# in ECDSA and ECDH) are built without inlining: 0.65 MB smaller, and the
# clinical relay and handshake benchmarks move by less than their noise.
# A package that joins the relay path joins the list.
set -euo pipefail
mod=github.com/wardgate/wardgate
hot=(
	runtime/... internal/... sync/... context errors io bufio os syscall time
	net crypto/internal/... crypto/aes crypto/cipher crypto/ecdh crypto/ecdsa crypto/ed25519
	crypto/elliptic crypto/hmac crypto/rsa crypto/sha256 crypto/sha512 crypto/subtle crypto/x509
	vendor/golang.org/x/crypto/... encoding/asn1 encoding/binary
	bytes strings strconv slices maps sort unicode/... math math/bits hash/... reflect
	golang.org/x/sys/... go.bug.st/serial/... periph.io/...
	github.com/fxamacker/cbor/v2 github.com/x448/float16
	"$mod/certs" "$mod/hal/..." "$mod/gateway/clinical" "$mod/gateway/front"
	"$mod/gateway/access/..."
)
flags="-gcflags=all=-l"
for p in "${hot[@]}"; do flags+=" -gcflags=$p="; done
echo "$flags"
