"""HTTP errors in FastAPI's standard shapes."""

from __future__ import annotations

from fastapi import HTTPException, status

NOT_FOUND = "not found"


def not_found() -> HTTPException:
    """The one 404 for missing and for other people's resources (they look the same)."""
    return HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)


def invalid(loc: tuple[str, ...], message: str, kind: str = "value_error") -> HTTPException:
    """A 422 shaped like FastAPI's request validation errors: field location and reason."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": list(loc), "msg": message, "type": kind}],
    )
