#!/usr/bin/env python3
"""Give each replica of a scaled Compose service its worker index, then run the command.

``docker compose up --scale ingest=3`` starts containers named ``<project>-ingest-1`` .. ``-3``;
Compose hands a replica neither its number nor its name (the hostname is the container id).
On a Compose network every container name resolves through Docker's DNS, so a replica resolves
``<prefix>1`` .. ``<prefix>N`` and takes the number whose address is its own: replica ``n``
gets worker index ``n - 1``. Names are unique and survive restarts, so two running replicas
never share an index and a restarted replica gets its old index (and checkpoint) back.

Usage: ``crampwatch-replica COMMAND [ARGS...]`` (in the image; Compose's ``entrypoint``).

Environment
-----------
CRAMPWATCH_INGEST_WORKER_INDEX
    When set, used as is and nothing is derived (one worker per explicitly configured service).
CRAMPWATCH_INGEST_WORKER_COUNT
    N, the number of replicas (Compose sets it and ``deploy.replicas`` from ``INGEST_REPLICAS``).
REPLICA_NAME_PREFIX
    Container-name prefix, e.g. ``crampwatch-ingest-``.
REPLICA_RESOLVE_TIMEOUT_S
    How long to wait for Docker's DNS to know this container (default 60).
REPLICA_OWN_DATA_DIR
    ``true``: ``CRAMPWATCH_DATA_DIR`` becomes ``$CRAMPWATCH_DATA_DIR/worker-<index>``, so replicas
    sharing one volume never share a spool or checkpoint directory.
REPLICA_INDEX_FILE
    Where the derived index is written for the health check (default
    ``/tmp/crampwatch-worker-index``).

The worker (``crampwatch ingest`` or ``serve``) appends the index to
``CRAMPWATCH_BROKER_CLIENT_ID``, so each replica keeps its own persistent MQTT session.

Exit status 78 (configuration error) with one line on stderr when no index can be derived.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence

EX_CONFIG = 78
INDEX_ENV = "CRAMPWATCH_INGEST_WORKER_INDEX"
COUNT_ENV = "CRAMPWATCH_INGEST_WORKER_COUNT"
DATA_DIR_ENV = "CRAMPWATCH_DATA_DIR"
INDEX_FILE = "/tmp/crampwatch-worker-index"
LOOKAHEAD = 16  # replicas beyond N that are looked for, to explain a count mismatch

Resolver = Callable[[str], set[str]]


class ReplicaError(Exception):
    """No worker index can be derived; the message says what to change."""


def resolve_all(name: str) -> set[str]:
    """Every IPv4/IPv6 address ``name`` resolves to; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        return set()
    return {str(info[4][0]) for info in infos}


def own_addresses() -> set[str]:
    """Addresses of this container (its hostname resolves to them through /etc/hosts)."""
    return resolve_all(socket.gethostname()) - {"127.0.0.1", "::1"}


def replica_number(prefix: str, count: int, own: set[str], resolve: Resolver) -> int | None:
    """The ``n`` (1-based) of the name ``<prefix>n`` that resolves to one of ``own``.

    Looks at ``n`` up to ``count + LOOKAHEAD`` so a replica beyond ``count`` is recognised.
    """
    for number in range(1, count + LOOKAHEAD + 1):
        if resolve(f"{prefix}{number}") & own:
            return number
    return None


def derive_environment(
    environ: Mapping[str, str],
    own: set[str],
    resolve: Resolver,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """The environment to run the command with: ``environ`` plus the worker index.

    Raises
    ------
    ReplicaError
        Count missing or not a number, no address, no matching name before ``timeout_s``, or
        this replica's number is above the worker count.
    """
    env = dict(environ)
    if env.get(INDEX_ENV, "") != "":
        return env
    raw_count = env.get(COUNT_ENV, "")
    if not raw_count.isdigit() or int(raw_count) < 1:
        raise ReplicaError(f"{COUNT_ENV} must be a positive integer, got {raw_count!r}")
    count = int(raw_count)
    prefix = env.get("REPLICA_NAME_PREFIX", "")
    if not prefix:
        raise ReplicaError(f"set {INDEX_ENV} or REPLICA_NAME_PREFIX (e.g. crampwatch-ingest-)")
    if not own:
        raise ReplicaError("this container has no network address to look its name up by")
    deadline = time.monotonic() + timeout_s
    while (number := replica_number(prefix, count, own, resolve)) is None:
        if time.monotonic() >= deadline:
            raise ReplicaError(
                f"none of {prefix}1..{prefix}{count + LOOKAHEAD} resolves to this container "
                f"({', '.join(sorted(own))}); is COMPOSE_PROJECT_NAME the project name "
                "(docker compose -p) and is the service name in REPLICA_NAME_PREFIX right?"
            )
        sleep(1.0)
    if number > count:
        raise ReplicaError(
            f"this is replica {number} but {COUNT_ENV}={count}: set INGEST_REPLICAS={number} "
            "(or more) in .env so every replica knows the worker count, then docker compose up -d"
        )
    env[INDEX_ENV] = str(number - 1)
    return env


def missing_replicas(prefix: str, count: int, resolve: Resolver) -> list[str]:
    """Names ``<prefix>1..count`` that do not resolve: replicas that are not running."""
    return [f"{prefix}{n}" for n in range(1, count + 1) if not resolve(f"{prefix}{n}")]


def with_data_dir(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the per-worker data directory when ``REPLICA_OWN_DATA_DIR`` is true."""
    out = dict(env)
    if out.get("REPLICA_OWN_DATA_DIR", "").lower() in ("1", "true", "yes"):
        base = out.get(DATA_DIR_ENV) or "/data"
        out[DATA_DIR_ENV] = f"{base.rstrip('/')}/worker-{out[INDEX_ENV]}"
    return out


def main(argv: Sequence[str]) -> int:
    """Derive the index and ``exec`` the command; returns only on error."""
    if not argv:
        print("usage: crampwatch-replica COMMAND [ARGS...]", file=sys.stderr)
        return EX_CONFIG
    try:
        timeout_s = float(os.environ.get("REPLICA_RESOLVE_TIMEOUT_S", "60"))
        env = derive_environment(os.environ, own_addresses(), resolve_all, timeout_s)
        env = with_data_dir(env)
        index_file = env.get("REPLICA_INDEX_FILE") or INDEX_FILE
        with open(index_file, "w", encoding="ascii") as handle:
            handle.write(env[INDEX_ENV] + "\n")
    except (ReplicaError, ValueError, OSError) as exc:
        print(f"crampwatch-replica: {exc}", file=sys.stderr)
        return EX_CONFIG
    print(
        f"crampwatch-replica: worker index {env[INDEX_ENV]} of {env.get(COUNT_ENV, '?')}, "
        f"data dir {env.get(DATA_DIR_ENV, '(default)')}",
        file=sys.stderr,
    )
    if env.get("REPLICA_NAME_PREFIX") and INDEX_ENV not in os.environ:
        missing = missing_replicas(env["REPLICA_NAME_PREFIX"], int(env[COUNT_ENV]), resolve_all)
        if missing:
            print(
                f"crampwatch-replica: WARNING {', '.join(missing)} not running: the devices "
                f"they own are not processed until they are (scale to {COUNT_ENV})",
                file=sys.stderr,
            )
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as exc:
        print(f"crampwatch-replica: cannot run {argv[0]!r}: {exc}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
