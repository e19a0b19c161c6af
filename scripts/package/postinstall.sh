#!/bin/sh
# Finish the service account and state directory; never touch an existing
# configuration or identity beyond making the configuration readable by the
# agent (an earlier package shipped it root:root 0640, which the agent,
# running as wardgate, cannot read).
set -e
if ! getent group wardgate >/dev/null; then groupadd --system wardgate; fi
if ! getent passwd wardgate >/dev/null; then
	useradd --system --gid wardgate --home-dir /var/lib/wardgate --shell /usr/sbin/nologin wardgate
fi
for g in gpio dialout; do
	if getent group "$g" >/dev/null; then usermod -a -G "$g" wardgate; fi
done
install -d -m 0700 -o wardgate -g wardgate /var/lib/wardgate
cfg=/etc/wardgate/wardgate.yaml
if [ -f "$cfg" ] && [ "$(stat -c %U:%G "$cfg")" = root:root ]; then
	chgrp wardgate "$cfg" && chmod g+r,o-rwx "$cfg"
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
echo "wardgate installed: edit $cfg (root:wardgate 0640), check it with"
echo "  sudo -u wardgate wardgate config check $cfg"
echo "then enroll with: sudo -u wardgate wardgate enroll --config $cfg --token TOKEN"
echo "and start it: systemctl enable --now wardgate. Staff who run wardgate status,"
echo "grant or lock join the group: usermod -a -G wardgate USER"
