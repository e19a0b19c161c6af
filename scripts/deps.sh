#!/usr/bin/env bash
# deps.sh installs what the tests need on a fresh Debian machine and is a
# no-op when everything is already there. It says what it does.
#
#   Debian packages: mosquitto, openssl, curl, socat, qemu-user-static,
#                    stunnel4, sslscan, rabbitmq-server, rsyslog (+ gnutls),
#                    iproute2 and util-linux (ip and unshare: the monitor's
#                    network-namespace test), postgresql-15 (server binaries
#                    in /usr/lib/postgresql/15/bin), chromium, openssh-server
#   step-ca:         built from the Go module proxy into $WARDGATE_CACHE/bin
#
# Environment: WARDGATE_CACHE (default: $HOME/.cache/wardgate).
set -euo pipefail

cache="${WARDGATE_CACHE:-$HOME/.cache/wardgate}"
stepca_version="v0.30.2"

# command:package pairs; a package is installed when its command is missing.
want=(
	mosquitto:mosquitto
	mosquitto_sub:mosquitto-clients
	openssl:openssl
	curl:curl
	socat:socat
	qemu-aarch64-static:qemu-user-static
	qemu-arm-static:qemu-user-static
	stunnel4:stunnel4
	sslscan:sslscan
	rabbitmq-server:rabbitmq-server
	rsyslogd:rsyslog
	rsyslogd:rsyslog-gnutls
	ip:iproute2
	unshare:util-linux
	chromium:chromium
	/usr/lib/postgresql/15/bin/initdb:postgresql-15
	sshd:openssh-server
)

missing=()
for pair in "${want[@]}"; do
	cmd="${pair%%:*}"
	pkg="${pair##*:}"
	if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "$cmd" ]; then
		missing+=("$pkg")
	fi
done

if [ "${#missing[@]}" -gt 0 ]; then
	# shellcheck disable=SC2207
	missing=($(printf '%s\n' "${missing[@]}" | sort -u))
	echo "deps: installing Debian packages: ${missing[*]}"
	sudo_cmd=()
	if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
	export DEBIAN_FRONTEND=noninteractive
	"${sudo_cmd[@]}" apt-get update -qq
	# Services must not start on install: the tests start their own
	# instances on loopback with their own configuration.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
		"${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
		remove_policy=1
	fi
	"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	if [ "${remove_policy:-0}" = 1 ]; then "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d; fi
else
	echo "deps: Debian packages present"
fi

if [ ! -x "$cache/bin/step-ca" ]; then
	echo "deps: building step-ca $stepca_version into $cache/bin (once; takes a few minutes)"
	mkdir -p "$cache/bin"
	# Built outside this module: step-ca's packages cannot share a module
	# with go.step.sm/crypto v0.9x.
	(cd "$cache" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN="$cache/bin" \
		go install "github.com/smallstep/certificates/cmd/step-ca@$stepca_version")
else
	echo "deps: step-ca present at $cache/bin/step-ca"
fi
