"""mosquitto password and ACL files: device credentials and service accounts.

mosquitto 2 reads a password file of ``username:$7$iterations$salt$hash`` lines
(PBKDF2-HMAC-SHA512, base64 salt and hash, the format ``mosquitto_passwd`` writes) and an ACL
file of ``user <name>`` blocks followed by ``topic <access> <filter>`` lines. It re-reads both
on SIGHUP (``docker compose kill -s SIGHUP mosquitto``) without dropping connected clients whose
credentials are still valid.

Device accounts are named after the device id: a device may publish only its own frames
(``crampwatch/v1/{id}/{emg|acc}``, ``crampwatch/v1/{id}/sync/{emg|acc}``) and read only its own
alerts (``crampwatch/v1/{id}/alerts``). Service accounts start with ``_``, which no device id
can (see :data:`ingest.protocol.DEVICE_ID_PATTERN`), so the two never collide.

Both files are owned by these functions: every change takes an exclusive lock, re-reads both
files, changes one account and replaces each file atomically, so concurrent callers never drop
each other's accounts. Comments and unknown lines in the files are not preserved.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ingest.protocol import DEVICE_ID_PATTERN, TOPIC_PREFIX

PBKDF2_ITERATIONS: Final = 1000
"""PBKDF2 rounds of new hashes; mosquitto_passwd uses 101. Passwords are random 192-bit
tokens, so the count only sets the broker's cost per CONNECT, not the secret's strength."""
SALT_BYTES: Final = 12  # as mosquitto_passwd
HASH_BYTES: Final = 64  # SHA-512 digest
FILE_MODE: Final = 0o640  # owner writes; the broker reads through the group
SERVICE_NAME_PATTERN: Final = re.compile(r"^_[a-z0-9][a-z0-9_-]{0,62}$")

Access = Literal["read", "write", "readwrite", "deny"]
_ACCESS: Final = ("read", "write", "readwrite", "deny")


class BrokerAuthError(ValueError):
    """A broker credential file or account that cannot be used; ``reason`` is machine-readable.

    Reasons: ``bad_device_id``, ``bad_service_name``, ``bad_password``, ``bad_rule``,
    ``bad_password_file``, ``bad_acl_file``, ``unknown_user``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _has_control(text: str) -> bool:
    return any(c in text for c in "\n\r\0")


@dataclass(frozen=True)
class AclRule:
    """One ``topic <access> <filter>`` line of a mosquitto ACL file."""

    access: Access
    topic: str

    def __post_init__(self) -> None:
        if self.access not in _ACCESS:
            raise BrokerAuthError("bad_rule", f"access {self.access!r} is not one of {_ACCESS}")
        if not self.topic or self.topic != self.topic.strip() or _has_control(self.topic):
            raise BrokerAuthError("bad_rule", f"topic filter {self.topic!r} is not usable")

    def line(self) -> str:
        return f"topic {self.access} {self.topic}"


def _t(suffix: str) -> str:
    return f"{TOPIC_PREFIX}/{suffix}"


SERVICE_ROLES: Final[Mapping[str, tuple[AclRule, ...]]] = {
    # Subscribes to everything under the prefix (every worker sees every device and processes
    # the ones it owns); publishes dead letters, its retained status and, through the alert
    # sink it runs, live alerts.
    "_ingest": (
        AclRule("read", _t("#")),
        AclRule("write", _t("_dead/#")),
        AclRule("write", _t("_workers/#")),
        AclRule("write", _t("+/alerts")),
    ),
    # Uploads of recorded nights go the bulk-sync way; readiness reads worker status.
    "_api": (
        AclRule("write", _t("+/sync/emg")),
        AclRule("write", _t("+/sync/acc")),
        AclRule("read", _t("_workers/#")),
        AclRule("read", _t("+/alerts")),
    ),
    "_alerts": (
        AclRule("readwrite", _t("+/alerts")),
        AclRule("read", _t("_workers/#")),
    ),
    # The compose health check: reads the broker's retained version topic and nothing else.
    "_health": (AclRule("read", "$SYS/broker/version"),),
}
"""ACL rules of the stack's service accounts, by account name."""


def device_acl_rules(device_id: str) -> tuple[AclRule, ...]:
    """The ACL of a device: publish its own frames, read its own alerts."""
    _check_device_id(device_id)
    return (
        AclRule("write", _t(f"{device_id}/emg")),
        AclRule("write", _t(f"{device_id}/acc")),
        AclRule("write", _t(f"{device_id}/sync/emg")),
        AclRule("write", _t(f"{device_id}/sync/acc")),
        AclRule("read", _t(f"{device_id}/alerts")),
    )


def generate_password() -> str:
    """A fresh random password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """Hash ``password`` in mosquitto 2's ``$7$`` format (PBKDF2-HMAC-SHA512).

    Parameters
    ----------
    password : str
        The clear-text password (UTF-8, no newline).
    salt : bytes, optional
        12 random bytes when not given.
    iterations : int
        PBKDF2 rounds, >= 1.
    """
    _check_password(password)
    if iterations < 1:
        raise BrokerAuthError("bad_password", f"iterations must be >= 1, got {iterations}")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` (PBKDF2) or ``$6$`` (salted SHA-512) hash."""
    parts = encoded.split("$")
    if len(parts) == 5 and parts[1] == "7":
        iterations, salt, expected = _int(parts[2]), _unb64(parts[3]), _unb64(parts[4])
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    elif len(parts) == 4 and parts[1] == "6":
        salt, expected = _unb64(parts[2]), _unb64(parts[3])
        got = hashlib.sha512(password.encode() + salt).digest()
    else:
        raise BrokerAuthError("bad_password_file", f"unknown hash format {encoded[:4]!r}")
    return hmac.compare_digest(got, expected)


def parse_password_file(text: str) -> dict[str, str]:
    """``{username: hash}`` from password-file text; blank lines and ``#`` comments skipped."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user or not encoded.startswith(("$6$", "$7$")):
            raise BrokerAuthError(
                "bad_password_file", f"line {number} is not 'user:$7$...': {line[:40]!r}"
            )
        entries[user] = encoded
    return entries


def render_password_file(entries: Mapping[str, str]) -> str:
    """Password-file text, one ``user:hash`` line per account, sorted by name."""
    return "".join(f"{user}:{entries[user]}\n" for user in sorted(entries))


def parse_acl_file(text: str) -> dict[str, tuple[AclRule, ...]]:
    """``{username: rules}`` from ACL text; ``""`` holds rules before any ``user`` line.

    Raises
    ------
    BrokerAuthError
        ``bad_acl_file`` for ``pattern`` lines or lines that are not ``user``/``topic``.
    """
    blocks: dict[str, list[AclRule]] = {"": []}
    current = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        if keyword == "user" and rest:
            current = rest
            blocks.setdefault(current, [])
        elif keyword == "topic" and rest:
            access, _, topic = rest.partition(" ")
            if access not in _ACCESS:  # "topic <filter>" means readwrite
                access, topic = "readwrite", rest
            try:
                blocks[current].append(AclRule(access, topic.strip()))  # type: ignore[arg-type]
            except BrokerAuthError as exc:
                raise BrokerAuthError("bad_acl_file", f"line {number}: {exc.detail}") from None
        else:
            raise BrokerAuthError("bad_acl_file", f"line {number} not understood: {line[:60]!r}")
    return {user: tuple(rules) for user, rules in blocks.items() if user or rules}


def render_acl_file(blocks: Mapping[str, Sequence[AclRule]]) -> str:
    """ACL-file text: anonymous rules first, then service accounts, then devices, by name."""
    out = ["# mosquitto ACL, generated by crampwatch; edits here are overwritten.\n"]
    for rule in blocks.get("", ()):
        out.append(rule.line() + "\n")
    for user in sorted(u for u in blocks if u):
        out.append(f"\nuser {user}\n")
        out.extend(rule.line() + "\n" for rule in blocks[user])
    return "".join(out)


def add_device_credentials(
    password_file: Path, acl_file: Path, device_id: str, *, password: str | None = None
) -> str:
    """Create or replace a device's broker account; other accounts are kept.

    Parameters
    ----------
    password_file, acl_file : Path
        The files mosquitto's ``password_file`` and ``acl_file`` options name; created when
        missing (mode 0640).
    device_id : str
        The device id, also its MQTT user name.
    password : str, optional
        A new random password when not given.

    Returns
    -------
    str
        The clear-text password, to hand to the device once (only its hash is stored).
    """
    _check_device_id(device_id)
    return _set_account(password_file, acl_file, device_id, device_acl_rules(device_id), password)


def add_service_account(
    password_file: Path,
    acl_file: Path,
    username: str,
    rules: Sequence[AclRule] | None = None,
    *,
    password: str | None = None,
) -> str:
    """Create or replace a service account; returns its clear-text password.

    Parameters
    ----------
    username : str
        ``_`` followed by lower-case letters, digits, ``_`` or ``-`` (e.g. ``_ingest``).
    rules : sequence of AclRule, optional
        Defaults to the role's rules in :data:`SERVICE_ROLES`.
    password : str, optional
        A new random password when not given (e.g. one taken from the stack's ``.env``).
    """
    if not SERVICE_NAME_PATTERN.match(username):
        raise BrokerAuthError(
            "bad_service_name",
            f"{username!r} must match {SERVICE_NAME_PATTERN.pattern} (e.g. '_ingest')",
        )
    if rules is None:
        if username not in SERVICE_ROLES:
            raise BrokerAuthError(
                "bad_service_name",
                f"{username!r} has no default rules; known roles: {sorted(SERVICE_ROLES)}",
            )
        rules = SERVICE_ROLES[username]
    return _set_account(password_file, acl_file, username, tuple(rules), password)


def remove_device(password_file: Path, acl_file: Path, device_id: str) -> bool:
    """Remove a device's account from both files; False when it had none.

    After the broker reloads, the device's open connection is closed and it cannot reconnect.
    """
    _check_device_id(device_id)
    with _locked(password_file):
        passwords = _read_passwords(password_file)
        blocks = _read_acl(acl_file)
        existed = device_id in passwords or device_id in blocks
        if not existed:
            return False
        passwords.pop(device_id, None)
        blocks.pop(device_id, None)
        # Password first: a crash between the writes leaves rules without a login, never a
        # login with stale rules.
        write_atomic(password_file, render_password_file(passwords))
        write_atomic(acl_file, render_acl_file(blocks))
    return True


def broker_accounts(password_file: Path) -> list[str]:
    """Names of every account in a password file, sorted; [] when the file does not exist."""
    return sorted(_read_passwords(password_file))


def check_login(password_file: Path, username: str, password: str) -> bool:
    """Whether the file holds ``username`` with ``password`` (as mosquitto would decide)."""
    encoded = _read_passwords(password_file).get(username)
    if encoded is None:
        raise BrokerAuthError("unknown_user", f"{username!r} is not in {password_file}")
    return verify_password(password, encoded)


def _set_account(
    password_file: Path,
    acl_file: Path,
    username: str,
    rules: tuple[AclRule, ...],
    password: str | None,
) -> str:
    password = generate_password() if password is None else password
    encoded = hash_password(password)
    with _locked(password_file):
        passwords = _read_passwords(password_file)
        blocks = _read_acl(acl_file)
        blocks[username] = rules
        passwords[username] = encoded
        # ACL first: a crash between the writes leaves rules without a login, never a login
        # without rules.
        write_atomic(acl_file, render_acl_file(blocks))
        write_atomic(password_file, render_password_file(passwords))
    return password


def _check_device_id(device_id: str) -> None:
    if not DEVICE_ID_PATTERN.match(device_id):
        raise BrokerAuthError(
            "bad_device_id", f"{device_id!r} does not match {DEVICE_ID_PATTERN.pattern}"
        )


def _check_password(password: str) -> None:
    if not password or _has_control(password):
        raise BrokerAuthError("bad_password", "password must be non-empty and on one line")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise BrokerAuthError("bad_password_file", f"corrupt base64 {text[:12]!r}") from None


def _int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise BrokerAuthError("bad_password_file", f"bad iteration count {text[:12]!r}")
    return int(text)


def _read_passwords(path: Path) -> dict[str, str]:
    try:
        return parse_password_file(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def _read_acl(path: Path) -> dict[str, tuple[AclRule, ...]]:
    try:
        return parse_acl_file(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


@contextlib.contextmanager
def _locked(password_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<password_file>.lock`` (beside it, same volume)."""
    password_file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = password_file.with_name(password_file.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Replace ``path`` by a fully written, fsynced temporary file (``mode``) in its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
