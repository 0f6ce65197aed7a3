# influx-proxy %post ($1: 1 = install, 2 = upgrade).
# data_dir and mlog_dir, 0750 for the service account. systemd's
# StateDirectory=/LogsDirectory= would create them as well, but they must also
# exist for runs outside systemd.
for dir in /var/lib/influx-proxy /var/log/influx-proxy; do
    mkdir -p "$dir"
    chown influx-proxy:influx-proxy "$dir"
    chmod 0750 "$dir"
done
# Like %systemd_post: on a first install apply the distribution's preset
# (RHEL/Fedora presets leave third-party services disabled: enable it with
# `systemctl enable --now influx-proxy`). Works without a running systemd
# (containers, image builds); errors never fail the transaction.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload preset influx-proxy.service >/dev/null 2>&1 || :
fi
exit 0
