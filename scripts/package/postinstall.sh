#!/bin/sh
# Create the service account and state directory; never touch an existing
# configuration or identity.
set -e
if ! getent group wardgate >/dev/null; then groupadd --system wardgate; fi
if ! getent passwd wardgate >/dev/null; then
	useradd --system --gid wardgate --home-dir /var/lib/wardgate --shell /usr/sbin/nologin wardgate
fi
for g in gpio dialout; do
	if getent group "$g" >/dev/null; then usermod -a -G "$g" wardgate; fi
done
install -d -m 0700 -o wardgate -g wardgate /var/lib/wardgate
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
echo "wardgate installed: edit /etc/wardgate/wardgate.yaml, check it with"
echo "  wardgate config check /etc/wardgate/wardgate.yaml"
echo "then enroll with: wardgate enroll --config /etc/wardgate/wardgate.yaml --token TOKEN"
