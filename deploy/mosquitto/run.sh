#!/bin/sh
# Run mosquitto and reload its password and ACL files whenever they change.
#
# mosquitto re-reads password_file and acl_file on SIGHUP and keeps every client whose
# credentials are still valid. `crampwatch devices add` rewrites the files in the shared
# mosquitto-auth volume from another container, which cannot signal this one, so this script
# polls a checksum of the files and sends SIGHUP itself. By hand, the same is
# `docker compose kill -s SIGHUP mosquitto`.
#
# Environment:
#   MOSQUITTO_BIN              broker binary (default: mosquitto)
#   MOSQUITTO_CONF             config file (default: /mosquitto/config/mosquitto.conf)
#   MOSQUITTO_WATCH            files to watch (default: /mosquitto/auth/passwd /mosquitto/auth/acl)
#   MOSQUITTO_RELOAD_INTERVAL_S  seconds between checks (default: 5)
set -eu

bin="${MOSQUITTO_BIN:-mosquitto}"
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
watch="${MOSQUITTO_WATCH:-/mosquitto/auth/passwd /mosquitto/auth/acl}"
interval="${MOSQUITTO_RELOAD_INTERVAL_S:-5}"

fingerprint() {
    # shellcheck disable=SC2086  # $watch is a list of paths
    cat $watch 2>/dev/null | cksum
}

for file in $watch; do
    if [ ! -r "$file" ]; then
        echo "run.sh: $file is missing or unreadable; run the mosquitto-init service" \
            "(crampwatch init --broker-dir ...) first" >&2
        exit 78
    fi
done

"$bin" -c "$conf" &
broker=$!
sleeper=""
stop() {
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    kill -TERM "$broker" 2>/dev/null
    wait "$broker"
    exit $?
}
trap stop TERM INT
trap 'kill -HUP "$broker" 2>/dev/null' HUP

last="$(fingerprint)"
while kill -0 "$broker" 2>/dev/null; do
    sleep "$interval" &
    sleeper=$!
    wait "$sleeper" || true
    sleeper=""
    now="$(fingerprint)"
    if [ "$now" != "$last" ]; then
        echo "run.sh: broker accounts changed, reloading mosquitto" >&2
        kill -HUP "$broker" 2>/dev/null || true
        last="$now"
    fi
done
wait "$broker"
