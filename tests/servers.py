"""Real servers for integration tests: mosquitto and InfluxDB 1.x ``influxd`` on free ports.

Each server runs as a child process with its own temporary directory. A missing binary fails
the run with the command that installs it; nothing is skipped silently. Servers can be stopped
and started again on the same port and data dir (outage and restart tests).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    """Path of ``name`` or a failed test run saying how to install it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        pytest.fail(
            f"{name} is not installed; install it with `apt-get install -y {package}` "
            "(or run `make test`, which does so when root)",
            pytrace=False,
        )
    return path


def wait_for(condition, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = "") -> None:
    """Poll ``condition()`` until it is truthy or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what or condition}")


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@dataclass
class ServerProcess:
    """A child server process that can be stopped, killed and started again."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout_s: float = 20.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for(self.ready, timeout_s, what=f"{self.name} on port {self.port}")
        except TimeoutError:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} did not start; log tail:\n{tail}") from None

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")
        return _port_open(self.port)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        wait_for(lambda: not _port_open(self.port), 10.0, what=f"{self.name} port to close")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Mosquitto(ServerProcess):
    """mosquitto 2.x listening on 127.0.0.1:port, anonymous allowed, persistence on."""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @classmethod
    def create(cls, workdir: Path, extra_conf: str = "", port: int | None = None) -> Mosquitto:
        binary = require_binary("mosquitto", "mosquitto")
        port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\n"
            + ("allow_anonymous true\n" if "allow_anonymous" not in extra_conf else "")
            + f"persistence true\npersistence_location {workdir}/\n"
            "max_queued_messages 1000000\nmax_inflight_messages 100\n"
            "log_dest stdout\nlog_type error\nlog_type warning\n"
            # as root mosquitto drops to user "mosquitto", which cannot write our temp dir
            + (
                f"user {getpass.getuser()}\n"
                if os.geteuid() == 0 and not re.search(r"^user ", extra_conf, re.M)
                else ""
            )
            + extra_conf
        )
        return cls("mosquitto", [binary, "-c", str(conf)], port, workdir)


@dataclass
class Influxd(ServerProcess):
    """Debian's InfluxDB 1.x ``influxd`` with its own meta/data/wal dirs and a free HTTP port."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def create(cls, workdir: Path, port: int | None = None) -> Influxd:
        binary = require_binary("influxd", "influxdb")
        port = port or free_port()
        bind_port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "influxdb.conf"
        conf.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{bind_port}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  auth-enabled = false
[continuous_queries]
  enabled = false
"""
        )
        return cls("influxd", [binary, "-config", str(conf)], port, workdir)

    def ready(self) -> bool:
        if not super().ready():
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return bool(response.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def query(self, q: str, db: str | None = None) -> bytes:
        """Run an InfluxQL statement over /query (POST) and return the raw JSON."""
        from urllib.parse import urlencode

        params = {"q": q}
        if db:
            params["db"] = db
        request = urllib.request.Request(
            f"{self.url}/query", data=urlencode(params).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())
