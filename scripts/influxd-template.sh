# Sourced by scripts/quickstart.sh (the harness crate reads the template itself).
# fill_influxd_template DIR PORT RPC_PORT LOG_LEVEL: prints scripts/influxd.conf.template filled in.
fill_influxd_template() {
    sed -e "s|@DIR@|$1|g" -e "s|@PORT@|$2|g" -e "s|@RPC_PORT@|$3|g" -e "s|@LOG_LEVEL@|$4|g" \
        "$(dirname "${BASH_SOURCE[0]}")/influxd.conf.template"
}
