#!/bin/bash
# Runs once, when the influxdb:2.7 image sets up an empty volume (DOCKER_INFLUXDB_INIT_MODE=setup);
# the influx CLI is already configured with the admin token.
#
# 1. DBRP mapping: InfluxQL database "$DOCKER_INFLUXDB_INIT_BUCKET", retention policy "autogen"
#    -> the bucket. CrampWatch and Grafana read with InfluxQL over /query.
# 2. A v1 (InfluxQL) login "grafana" that may only read the bucket.
set -euo pipefail

: "${DOCKER_INFLUXDB_INIT_ORG:?}" "${DOCKER_INFLUXDB_INIT_BUCKET:?}"
: "${DOCKER_INFLUXDB_INIT_BUCKET_ID:?}" "${GRAFANA_INFLUX_PASSWORD:?}"

influx v1 dbrp create \
    --org "$DOCKER_INFLUXDB_INIT_ORG" \
    --bucket-id "$DOCKER_INFLUXDB_INIT_BUCKET_ID" \
    --db "$DOCKER_INFLUXDB_INIT_BUCKET" \
    --rp autogen \
    --default

influx v1 auth create \
    --org "$DOCKER_INFLUXDB_INIT_ORG" \
    --username grafana \
    --password "$GRAFANA_INFLUX_PASSWORD" \
    --read-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID" \
    --description "Grafana (read-only InfluxQL)"
