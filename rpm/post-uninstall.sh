# influx-proxy %postun ($1: 0 = erase, 1 = upgrade).
# Like %systemd_postun_with_restart: on upgrade restart a running service with
# the new binary (a graceful SIGTERM stop; accepted writes are on disk).
# RPM has no purge: on erase /var/lib/influx-proxy (queued writes not yet
# delivered!), /var/log/influx-proxy and the influx-proxy account are KEPT, and
# an edited /etc/influx-proxy/proxy.json is saved as proxy.json.rpmsave.
# Remove them by hand once the data is no longer needed.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart influx-proxy.service >/dev/null 2>&1 || :
    fi
fi
exit 0
