#!/usr/bin/env python3
"""Health check of an ingest worker container: is this worker online at the broker?

The worker publishes a retained ``{"state": "online"}`` on
``crampwatch/v1/_workers/<client id>-<index>/status`` when it connects, ``offline`` when it stops,
and the broker publishes ``offline`` (its last will) when the connection dies. This check
connects with the worker's own broker account under a throw-away client id, reads that retained
message and exits 0 only for ``online``.

Environment: ``CRAMPWATCH_BROKER_URL`` (``mqtt://host:port``), ``CRAMPWATCH_BROKER_USERNAME``,
``CRAMPWATCH_BROKER_PASSWORD``, ``CRAMPWATCH_BROKER_CLIENT_ID`` (default ``crampwatch-ingest``);
the worker index from ``CRAMPWATCH_INGEST_WORKER_INDEX`` or the file ``crampwatch-replica``
wrote (``REPLICA_INDEX_FILE``, default ``/tmp/crampwatch-worker-index``).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

STATUS_TOPIC = "crampwatch/v1/_workers/{worker}/status"
TIMEOUT_S = 5.0


class HealthError(Exception):
    """The check cannot run or the worker is not online; the message says which."""


def worker_name(environ: Mapping[str, str]) -> str:
    """``<client id>-<index>``, as ``crampwatch ingest`` names its MQTT client and status."""
    index = environ.get("CRAMPWATCH_INGEST_WORKER_INDEX", "")
    if not index:
        path = environ.get("REPLICA_INDEX_FILE") or "/tmp/crampwatch-worker-index"
        try:
            with open(path, encoding="ascii") as handle:
                index = handle.read().strip()
        except OSError as exc:
            raise HealthError(f"no worker index: {exc}") from None
    base = environ.get("CRAMPWATCH_BROKER_CLIENT_ID") or "crampwatch-ingest"
    return f"{base}-{index}"


def worker_state(environ: Mapping[str, str], timeout_s: float = TIMEOUT_S) -> str:
    """The ``state`` of the worker's retained status message.

    Raises
    ------
    HealthError
        No broker URL, connection refused, or no status within ``timeout_s``.
    """
    url = urlsplit(environ.get("CRAMPWATCH_BROKER_URL", ""))
    if url.scheme not in ("mqtt", "mqtts") or url.hostname is None:
        raise HealthError("CRAMPWATCH_BROKER_URL must be mqtt://host:port")
    topic = STATUS_TOPIC.format(worker=worker_name(environ))
    received: list[bytes] = []
    connected: list[str] = []
    done = threading.Event()

    def on_connect(client: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        connected.append(str(reason))
        if getattr(reason, "is_failure", False):
            done.set()
        else:
            client.subscribe(topic, qos=0)

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"crampwatch-health-{secrets.token_hex(4)}"
    )
    if environ.get("CRAMPWATCH_BROKER_USERNAME"):
        client.username_pw_set(
            environ["CRAMPWATCH_BROKER_USERNAME"], environ.get("CRAMPWATCH_BROKER_PASSWORD")
        )
    if url.scheme == "mqtts":
        client.tls_set()
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(url.hostname, url.port or (8883 if url.scheme == "mqtts" else 1883), 10)
    except OSError as exc:
        raise HealthError(f"broker unreachable: {exc}") from None
    client.loop_start()
    try:
        done.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    if not received:
        why = f"connect: {connected[0]}" if connected else "no CONNACK"
        raise HealthError(f"no retained status on {topic} within {timeout_s} s ({why})")
    try:
        return str(json.loads(received[0])["state"])
    except (ValueError, KeyError, TypeError):
        raise HealthError(f"unreadable status on {topic}: {received[0][:60]!r}") from None


def main() -> int:
    try:
        state = worker_state(os.environ)
    except HealthError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if state != "online":
        print(f"unhealthy: worker state is {state!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
