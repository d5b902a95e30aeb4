"""Webhook signatures: HMAC-SHA256 over ``f"{timestamp}.{body}"`` with a replay window.

Header (one line; this one signs the body ``{}`` with the secret ``whsec_example``)::

    CrampWatch-Signature: t=1764072000,v1=f6e1dc25b11f1c1f4ee680d6787a7cfcd6c1c75cbec5114a01e31f1893c24f98

``t`` is the Unix time in whole seconds when the attempt was signed; each ``v1`` is the lower-case
hex HMAC-SHA256 of the ASCII timestamp, a full stop and the raw request body, keyed with the
subscription's secret (UTF-8). During a secret rotation the header carries one ``v1`` per secret.
Receivers call :func:`verify_signature` on the raw body before parsing it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from typing import Final

SIGNATURE_HEADER: Final = "CrampWatch-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
EVENT_HEADER: Final = "CrampWatch-Event"
DELIVERY_HEADER: Final = "CrampWatch-Delivery"
DEFAULT_TOLERANCE_S: Final = 300


class SignatureError(ValueError):
    """A webhook request whose signature must not be trusted.

    ``reason`` is ``malformed`` (header unreadable), ``stale`` (timestamp outside the replay
    window) or ``mismatch`` (no signature matches the body).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def signature_header(secrets: str | Sequence[str], body: bytes, timestamp_s: int) -> str:
    """The ``CrampWatch-Signature`` value for ``body`` signed at ``timestamp_s`` (Unix s)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys or any(not key for key in keys):
        raise ValueError("at least one non-empty secret is needed to sign")
    parts = [f"t={int(timestamp_s)}"] + [
        f"v1={_digest(key, body, int(timestamp_s))}" for key in keys
    ]
    return ",".join(parts)


def verify_signature(
    secrets: str | Sequence[str],
    body: bytes,
    header: str | None,
    *,
    now_s: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a ``CrampWatch-Signature`` header; return its timestamp (Unix s) or raise.

    Parameters
    ----------
    secrets : str or sequence of str
        The subscription secret(s) the receiver accepts.
    body : bytes
        The raw request body, exactly as received.
    header : str or None
        The header value.
    now_s : float
        The receiver's current Unix time, s.
    tolerance_s : float
        Replay window: timestamps further than this from ``now_s`` (either way) are refused.

    Raises
    ------
    SignatureError
    """
    if not header:
        raise SignatureError("malformed", f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError("malformed", f"element {item!r} is not key=value")
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                raise SignatureError("malformed", "t must appear once, as whole seconds")
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise SignatureError("malformed", "header needs t=<unix seconds> and v1=<hex digest>")
    if not math.isfinite(now_s) or abs(now_s - timestamp) > tolerance_s:
        raise SignatureError(
            "stale",
            f"timestamp {timestamp} is {now_s - timestamp:.0f} s from now; "
            f"the window is ±{tolerance_s:g} s",
        )
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    for key in keys:
        expected = _digest(key, body, timestamp)
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return timestamp
    raise SignatureError("mismatch", "no v1 signature matches the body and secret")


def _digest(secret: str, body: bytes, timestamp_s: int) -> str:
    message = str(timestamp_s).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
