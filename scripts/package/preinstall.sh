#!/bin/sh
# Create the service account before the files are unpacked, so that dpkg
# gives /etc/wardgate/wardgate.yaml its group (root:wardgate 0640) by name:
# the agent runs as wardgate and must read it.
set -e
if ! getent group wardgate >/dev/null; then groupadd --system wardgate; fi
if ! getent passwd wardgate >/dev/null; then
	useradd --system --gid wardgate --home-dir /var/lib/wardgate --shell /usr/sbin/nologin wardgate
fi
