# influx-proxy %preun ($1: 0 = erase, 1 = upgrade).
# Like %systemd_preun: on erase, stop and disable the service; on upgrade it
# keeps running and %postun restarts it.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now influx-proxy.service >/dev/null 2>&1 || :
    else
        systemctl --no-reload disable influx-proxy.service >/dev/null 2>&1 || :
    fi
fi
exit 0
