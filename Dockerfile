# syntax=docker/dockerfile:1
# CrampWatch application image: `crampwatch` CLI (ingest, api, serve, init, ...).
#
#   docker build -t crampwatch .
#   docker run --rm crampwatch --help
#
# Stage 1 builds a virtual environment (compilers only here, for any dependency without a
# wheel); stage 2 copies it onto a clean slim base and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached while only the code changes), then the project itself.
COPY pyproject.toml README.md ./
RUN pip install --upgrade pip setuptools wheel \
    && python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt "psycopg[binary]>=3.1,<4"
COPY crampwatch ./crampwatch
COPY ingest ./ingest
COPY detection ./detection
COPY storage ./storage
COPY alerts ./alerts
COPY api ./api
COPY simulator ./simulator
RUN pip install --no-deps . \
    && crampwatch --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="crampwatch" \
      org.opencontainers.image.description="Nocturnal leg cramp detection backend" \
      org.opencontainers.image.licenses="Apache-2.0"
# gid 1883 is the group of the eclipse-mosquitto image's user: the broker reads the password
# and ACL files this user writes into the shared mosquitto-auth volume (mode 0640).
ARG APP_UID=10001
ARG APP_GID=1883
RUN groupadd --system --gid "${APP_GID}" crampwatch \
    && useradd --system --uid "${APP_UID}" --gid "${APP_GID}" --no-create-home \
       --home-dir /data --shell /usr/sbin/nologin crampwatch \
    && install -d -o crampwatch -g crampwatch -m 0750 /data \
    && install -d -o crampwatch -g crampwatch -m 2750 /mosquitto-auth
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 deploy/replica_entrypoint.py /usr/local/bin/crampwatch-replica
COPY --chmod=0755 deploy/worker_healthcheck.py /usr/local/bin/crampwatch-worker-health
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CRAMPWATCH_DATA_DIR=/data
USER ${APP_UID}:${APP_GID}
WORKDIR /data
EXPOSE 8000
ENTRYPOINT ["crampwatch"]
CMD ["--help"]
