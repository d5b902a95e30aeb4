"""The README's settings table and set-up commands stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from crampwatch.settings import settings_table

ROOT = Path(__file__).resolve().parents[2]


def _readme_table() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- settings-table:start -->(.*)<!-- settings-table:end -->", text, re.S)
    assert match, "README lacks the settings-table markers"
    return match.group(1)


def test_readme_lists_every_setting_with_its_default() -> None:
    table = _readme_table()
    for env, default, _ in settings_table():
        row = re.search(rf"^\| `{env}` \| `([^`]*)` \|", table, re.M)
        assert row, f"{env} is missing from the README settings table"
        assert row.group(1) == default, (
            f"{env}: README says {row.group(1)!r}, code says {default!r}"
        )


def test_readme_lists_no_setting_that_does_not_exist() -> None:
    known = {env for env, _, _ in settings_table()}
    listed = set(re.findall(r"^\| `(CRAMPWATCH_[A-Z0-9_]+)` \|", _readme_table(), re.M))
    assert listed <= known, f"README lists unknown settings: {sorted(listed - known)}"


def test_the_two_setup_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
