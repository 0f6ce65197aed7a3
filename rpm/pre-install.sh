# influx-proxy %pre ($1: 1 = install, 2 = upgrade).
# The service account must exist before the files are unpacked, because
# /etc/influx-proxy/proxy.json is shipped as root:influx-proxy 0640.
if ! getent group influx-proxy >/dev/null; then
    groupadd -r influx-proxy
fi
if ! getent passwd influx-proxy >/dev/null; then
    useradd -r -g influx-proxy -d /var/lib/influx-proxy -M \
        -s /sbin/nologin -c "influx-proxy daemon" influx-proxy
fi
exit 0
