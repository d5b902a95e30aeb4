"""The in-process MQTT broker of the single-machine default (amqtt, MQTT 3.1.1).

Used only when no broker URL is configured. Clients must send a user name (any password): the
broker keeps persistent sessions (``clean_session=False``) and queues QoS 1 messages for
disconnected clients only for named, non-anonymous sessions, which is what makes
"acknowledge after durable" work across a worker restart. Queued messages live in memory: a
restart of the whole ``crampwatch serve`` process loses what the broker held, which is why
production uses mosquitto with persistence (docker-compose).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from types import TracebackType
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger(__name__)


class BrokerStartError(RuntimeError):
    """The embedded broker could not listen (port taken, bad address)."""


class EmbeddedBroker:
    """An amqtt broker running on its own event loop in a daemon thread.

    Parameters
    ----------
    host : str
        Address to bind, normally 127.0.0.1.
    port : int
        TCP port; 0 picks a free one (read :attr:`port` after :meth:`start`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1884) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # A user name is required (any password): anonymous sessions keep nothing.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False}
            },
        }

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        """Start listening; raise :class:`BrokerStartError` if the port cannot be bound."""
        if self.port == 0:
            with socket.socket() as sock:
                sock.bind((self.host, 0))
                self.port = int(sock.getsockname()[1])
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((self.host, self.port)) == 0:
                raise BrokerStartError(
                    f"port {self.host}:{self.port} is already in use; set "
                    "CRAMPWATCH_BROKER_EMBEDDED_PORT or CRAMPWATCH_BROKER_URL"
                )
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise BrokerStartError(f"embedded broker did not start within {timeout_s} s")
        if self._error is not None:
            raise BrokerStartError(f"embedded broker failed: {self._error}") from self._error
        log.info("embedded MQTT broker listening on %s", self.url)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.ERROR)

        async def build() -> Broker:
            return Broker(self._config())

        try:
            self._broker = loop.run_until_complete(build())
            loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to start() and re-raised there
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    def connected_clients(self) -> set[str]:
        """Client ids with a connected session right now (health and tests)."""
        broker = self._broker
        if broker is None:
            return set()
        sessions = dict(broker._sessions)  # amqtt keeps {client_id: (session, handler)}
        return {
            cid
            for cid, (session, _) in sessions.items()
            if session.transitions.state == "connected"
        }

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the broker down and join its thread."""
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            future.result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
