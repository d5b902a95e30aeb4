"""Pictures of a night and the patient page: valid images of exactly the requested size."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import pytest

from tests.api.conftest import World

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk of a PNG."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.mark.parametrize(("width", "height"), [(1200, 500), (640, 300)])
def test_png_has_the_requested_size(world: World, width: int, height: int) -> None:
    answer = world.get(
        "carol",
        "/v1/wearers/ann/nights/2026-11-23/picture",
        params={"width": width, "height": height},
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert png_size(answer.content) == (width, height)


def test_svg_has_the_requested_size(world: World) -> None:
    answer = world.get(
        "ann",
        "/v1/me/nights/2026-11-23/picture",
        params={"format": "svg", "width": 900, "height": 400},
    )
    assert answer.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(answer.content)
    assert root.tag.endswith("svg")
    assert (root.get("width"), root.get("height")) == ("900px", "400px")
    assert root.get("viewBox") == "0 0 900 400"


def test_night_without_data_still_renders(world: World) -> None:
    answer = world.get(
        "bob", "/v1/me/nights/2026-01-01/picture", params={"width": 300, "height": 200}
    )
    assert png_size(answer.content) == (300, 200)


def test_out_of_range_size_is_a_validation_error(world: World) -> None:
    answer = world.get(
        "ann", "/v1/me/nights/2026-11-23/picture", params={"width": 100_000, "height": 400}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", "width"]


def test_patient_page_is_html_with_charts(world: World) -> None:
    answer = world.get("carol", "/v1/wearers/ann/page", params={"weeks": 4})
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert page.startswith("<!doctype html>") and page.count("<svg") == 2
    assert "Cramps on 3 of the last 7 nights" in page
    assert "2026-11-23" in page and "bob" not in page
