"""mosquitto password/ACL files: formats checked against Debian's mosquitto_passwd, round trips,
updates that keep other accounts, concurrent writers, and specific errors for bad input."""

from __future__ import annotations

import stat
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.client import topic_matches_sub

from alerts.messages import alerts_topic
from ingest.broker_auth import (
    SERVICE_ROLES,
    AclRule,
    BrokerAuthError,
    add_device_credentials,
    add_service_account,
    broker_accounts,
    check_login,
    device_acl_rules,
    hash_password,
    parse_acl_file,
    parse_password_file,
    remove_device,
    render_acl_file,
    render_password_file,
    verify_password,
)
from ingest.intake import DEAD_TOPIC, STATUS_TOPIC, SUBSCRIPTION
from ingest.protocol import StreamKind, Transport, topic_for
from tests.servers import require_binary

passwords = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\0"),
    min_size=1,
    max_size=40,
)
device_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")


def test_hash_from_mosquitto_passwd_verifies(tmp_path: Path) -> None:
    binary = require_binary("mosquitto_passwd", "mosquitto")
    path = tmp_path / "passwd"
    subprocess.run([binary, "-c", "-b", str(path), "wearer-7", "s3cret pass"], check=True)
    entries = parse_password_file(path.read_text())
    assert entries["wearer-7"].startswith("$7$")
    assert verify_password("s3cret pass", entries["wearer-7"])
    assert not verify_password("s3cret pas", entries["wearer-7"])


def test_mosquitto_passwd_edits_our_file_and_keeps_our_hashes(tmp_path: Path) -> None:
    """mosquitto_passwd parses the generated file: deleting one user keeps the others intact."""
    binary = require_binary("mosquitto_passwd", "mosquitto")
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    a = add_device_credentials(passwd, acl, "dev-a")
    b = add_device_credentials(passwd, acl, "dev-b")
    subprocess.run([binary, "-D", str(passwd), "dev-a"], check=True)
    assert broker_accounts(passwd) == ["dev-b"]
    assert check_login(passwd, "dev-b", b)
    assert not check_login(passwd, "dev-b", a)


@settings(max_examples=40, deadline=None)
@given(password=passwords, salt=st.binary(min_size=12, max_size=12), rounds=st.integers(1, 50))
def test_hash_round_trip(password: str, salt: bytes, rounds: int) -> None:
    encoded = hash_password(password, salt=salt, iterations=rounds)
    assert encoded.startswith(f"$7${rounds}$")
    assert verify_password(password, encoded)
    assert not verify_password(password + "x", encoded)


def test_hash_uses_fresh_salt() -> None:
    assert hash_password("same") != hash_password("same")


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        device_ids,
        st.lists(
            st.builds(
                AclRule,
                st.sampled_from(["read", "write", "readwrite", "deny"]),
                st.from_regex(r"\A[a-z0-9_$+#/-]{1,30}\Z").filter(lambda t: t.strip() == t),
            ),
            max_size=5,
        ).map(tuple),
        max_size=6,
    )
)
def test_acl_round_trip(blocks: dict[str, tuple[AclRule, ...]]) -> None:
    assert parse_acl_file(render_acl_file(blocks)) == {k: v for k, v in blocks.items() if v or k}


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(device_ids, passwords.map(lambda p: hash_password(p, iterations=1))))
def test_password_file_round_trip(entries: dict[str, str]) -> None:
    assert parse_password_file(render_password_file(entries)) == entries


def test_device_rules_allow_only_its_own_topics() -> None:
    rules = device_acl_rules("dev-a")
    writes = sorted(r.topic for r in rules if r.access == "write")
    reads = [r.topic for r in rules if r.access == "read"]
    assert writes == [
        "crampwatch/v1/dev-a/acc",
        "crampwatch/v1/dev-a/emg",
        "crampwatch/v1/dev-a/sync/acc",
        "crampwatch/v1/dev-a/sync/emg",
    ]
    assert reads == ["crampwatch/v1/dev-a/alerts"]
    assert not any(c in r.topic for r in rules for c in "+#")


def test_add_keeps_other_accounts_and_replaces_own(tmp_path: Path) -> None:
    passwd, acl = tmp_path / "auth" / "passwd", tmp_path / "auth" / "acl"
    ingest = add_service_account(passwd, acl, "_ingest")
    first = add_device_credentials(passwd, acl, "dev-a")
    other = add_device_credentials(passwd, acl, "dev-b")
    second = add_device_credentials(passwd, acl, "dev-a")
    assert first != second
    assert broker_accounts(passwd) == ["_ingest", "dev-a", "dev-b"]
    assert check_login(passwd, "dev-a", second)
    assert not check_login(passwd, "dev-a", first)
    assert check_login(passwd, "dev-b", other)
    assert check_login(passwd, "_ingest", ingest)
    blocks = parse_acl_file(acl.read_text())
    assert blocks["dev-a"] == device_acl_rules("dev-a")
    assert blocks["_ingest"] == SERVICE_ROLES["_ingest"]
    for path in (passwd, acl):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_given_password_is_stored(tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    assert add_service_account(passwd, acl, "_api", password="from-env") == "from-env"
    assert check_login(passwd, "_api", "from-env")


def test_remove_device(tmp_path: Path) -> None:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    add_device_credentials(passwd, acl, "dev-a")
    add_device_credentials(passwd, acl, "dev-b")
    assert remove_device(passwd, acl, "dev-a") is True
    assert remove_device(passwd, acl, "dev-a") is False
    assert broker_accounts(passwd) == ["dev-b"]
    assert "dev-a" not in parse_acl_file(acl.read_text())


def _add(args: tuple[str, str]) -> tuple[str, str]:
    directory, device_id = args
    base = Path(directory)
    return device_id, add_device_credentials(base / "passwd", base / "acl", device_id)


def test_concurrent_writers_lose_no_account(tmp_path: Path) -> None:
    ids = [f"dev-{i:02d}" for i in range(24)]
    with ProcessPoolExecutor(max_workers=4) as pool:
        issued = dict(pool.map(_add, [(str(tmp_path), d) for d in ids]))
    passwd = tmp_path / "passwd"
    assert broker_accounts(passwd) == ids
    assert sorted(parse_acl_file((tmp_path / "acl").read_text())) == ids
    assert all(check_login(passwd, d, p) for d, p in issued.items())


@pytest.mark.parametrize("bad", ["a/b", "dev+", "dev#", "_svc", "", "a:b", "x" * 65, "dev a"])
def test_bad_device_id_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BrokerAuthError) as info:
        add_device_credentials(tmp_path / "passwd", tmp_path / "acl", bad)
    assert info.value.reason == "bad_device_id"
    assert not (tmp_path / "passwd").exists()


@pytest.mark.parametrize("bad", ["ingest", "_", "_Upper", "_a/b"])
def test_bad_service_name_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BrokerAuthError) as info:
        add_service_account(tmp_path / "passwd", tmp_path / "acl", bad, ())
    assert info.value.reason == "bad_service_name"


def test_service_without_role_needs_rules(tmp_path: Path) -> None:
    with pytest.raises(BrokerAuthError, match="no default rules"):
        add_service_account(tmp_path / "passwd", tmp_path / "acl", "_other")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("dev-a\n", "bad_password_file"),
        ("dev-a:plaintext\n", "bad_password_file"),
    ],
)
def test_corrupt_password_file_is_reported(tmp_path: Path, text: str, reason: str) -> None:
    (tmp_path / "passwd").write_text(text)
    with pytest.raises(BrokerAuthError) as info:
        add_device_credentials(tmp_path / "passwd", tmp_path / "acl", "dev-b")
    assert info.value.reason == reason
    assert (tmp_path / "passwd").read_text() == text  # nothing half-written


@pytest.mark.parametrize("encoded", ["$7$x$AAAA$AAAA", "$7$10$%%%$AAAA", "$5$abc"])
def test_corrupt_hash_is_reported(encoded: str) -> None:
    with pytest.raises(BrokerAuthError) as info:
        verify_password("pw", encoded)
    assert info.value.reason == "bad_password_file"


def test_acl_file_with_pattern_lines_is_refused() -> None:
    with pytest.raises(BrokerAuthError) as info:
        parse_acl_file("pattern write crampwatch/v1/%u/emg\n")
    assert info.value.reason == "bad_acl_file"


def test_acl_topic_without_access_means_readwrite() -> None:
    assert parse_acl_file("user a\ntopic x/y\n") == {"a": (AclRule("readwrite", "x/y"),)}


@pytest.mark.parametrize("password", ["", "two\nlines"])
def test_bad_password_is_refused(tmp_path: Path, password: str) -> None:
    with pytest.raises(BrokerAuthError) as info:
        add_device_credentials(tmp_path / "passwd", tmp_path / "acl", "dev-a", password=password)
    assert info.value.reason == "bad_password"


def _allowed(account: str, access: str, topic: str) -> bool:
    return any(
        rule.access in (access, "readwrite") and topic_matches_sub(rule.topic, topic)
        for rule in SERVICE_ROLES[account]
    )


def test_service_roles_cover_the_topics_the_code_uses() -> None:
    """What ingest and alerts publish and subscribe to is allowed by their roles' ACL."""
    assert SUBSCRIPTION in [r.topic for r in SERVICE_ROLES["_ingest"] if r.access == "read"]
    for topic in (
        STATUS_TOPIC.format(worker="crampwatch-ingest-0"),
        DEAD_TOPIC.format(device_id="dev-a"),
        alerts_topic("dev-a"),
    ):
        assert _allowed("_ingest", "write", topic), topic
    assert _allowed("_alerts", "write", alerts_topic("dev-a"))
    for device_topic in (
        topic_for("dev-a", StreamKind.EMG, Transport.SYNC),
        topic_for("dev-a", StreamKind.ACC, Transport.SYNC),
    ):
        assert _allowed("_api", "write", device_topic)
        assert device_topic in [r.topic for r in device_acl_rules("dev-a")]
    assert alerts_topic("dev-a") in [r.topic for r in device_acl_rules("dev-a")]
