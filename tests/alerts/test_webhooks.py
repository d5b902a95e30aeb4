"""Webhook delivery against a real local HTTP receiver, on an injected clock."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from alerts.live import LiveAlertSink
from alerts.messages import AlertType, CrampAlert
from alerts.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature
from alerts.webhooks import (
    DeliveryLog,
    WebhookDispatcher,
    WebhookSubscription,
    backoff_delay_s,
    url_problem,
)
from tests.alerts.builders import (
    NIGHT_START_US,
    Hit,
    S,
    SimClock,
    WebhookReceiver,
    episode_events,
    self_signed_tls,
)
from tests.servers import free_port, wait_for

SECRET = "whsec-test-0123456789"


class Directory:
    """Subscriptions held in memory (the metadata database implements the same protocol)."""

    def __init__(self, subscriptions: dict[str, list[WebhookSubscription]]) -> None:
        self.subscriptions = subscriptions

    def webhooks_for_device(self, device_id: str) -> list[WebhookSubscription]:
        return self.subscriptions.get(device_id, [])


def started_alert(engine: Engine, directory: Directory, clock: SimClock, device_id: str) -> str:
    """Record a ``cramp.started`` for ``device_id``; return its event id."""
    sink = LiveAlertSink(engine, None, directory=directory, clock_us=clock.us)
    event = episode_events(device_id, 0, 30)[0]
    sink.handle(device_id, [event], event.at_us)
    [record] = sink.outbox(device_id)
    return record.event_id


def test_receiver_down_for_30_s_gets_the_alert_once_after_it_recovers(engine: Engine) -> None:
    clock = SimClock(NIGHT_START_US / S)
    received_at_s: list[float] = []

    def answer(hit: Hit) -> int:
        received_at_s.append(clock.now_s)  # the receiver's (simulated) clock
        return 200

    receiver = WebhookReceiver(free_port(), respond=answer)
    directory = Directory(
        {"dev-w": [WebhookSubscription("sub-1", "carer-1", receiver.url, SECRET)]}
    )
    event_id = started_alert(engine, directory, clock, "dev-w")
    up_at_s = clock.now_s + 30.0

    def recover(now_s: float) -> None:
        if now_s >= up_at_s and receiver._server is None:
            receiver.start()

    clock.on_advance.append(recover)
    with httpx.Client() as http:
        dispatcher = WebhookDispatcher(
            engine,
            directory,
            http=http,
            rng=np.random.default_rng(3),
            clock_s=clock,
            sleep=clock.sleep,
            backoff_base_s=1.0,
            backoff_max_s=60.0,
        )
        log = DeliveryLog(engine)
        dispatcher.start(idle_s=1.0)
        try:
            wait_for(lambda: log.deliveries()[0].status == "delivered", 20, what="delivery")
            delivered_at_s = clock.now_s
            dispatcher.stop()
            for _ in range(5):  # more passes later on: nothing is sent again
                clock.sleep(60)
                assert dispatcher.deliver_due() == 0
        finally:
            dispatcher.stop()
            receiver.stop()
    [record] = log.deliveries()
    assert record.attempts >= 4  # it failed while the receiver was down
    assert delivered_at_s >= up_at_s
    [hit] = receiver.hits
    assert hit.headers[IDEMPOTENCY_HEADER] == event_id
    signed_at_s = verify_signature(
        SECRET, hit.body, hit.headers[SIGNATURE_HEADER], now_s=received_at_s[0]
    )
    assert up_at_s <= signed_at_s <= up_at_s + 60  # sent at the first attempt after recovery
    assert CrampAlert.from_json(hit.body).type is AlertType.CRAMP_STARTED


def test_a_delivery_that_keeps_failing_is_dead_lettered_after_the_last_attempt(
    engine: Engine,
) -> None:
    clock = SimClock(NIGHT_START_US / S)
    with WebhookReceiver(free_port(), respond=lambda hit: 503) as receiver, httpx.Client() as http:
        directory = Directory(
            {"dev-d": [WebhookSubscription("sub-d", "clin-1", receiver.url, SECRET)]}
        )
        started_alert(engine, directory, clock, "dev-d")
        dispatcher = WebhookDispatcher(
            engine,
            directory,
            http=http,
            rng=np.random.default_rng(1),
            clock_s=clock,
            max_attempts=4,
            backoff_base_s=2.0,
        )
        attempt_times = []
        while (due := dispatcher.next_due_s()) is not None:
            clock.now_s = max(clock.now_s, due)
            attempt_times.append(clock.now_s)
            assert dispatcher.deliver_due() == 1
        log = DeliveryLog(engine)
        [dead] = log.dead_letters(device_ids=["dev-d"])
        assert len(receiver.hits) == 4
        assert dead.attempts == 4
        assert dead.last_status_code == 503
        waits = np.diff(attempt_times)
        for n, wait_s in enumerate(waits, start=1):  # equal jitter: [d/2, d], d = 2 * 2^(n-1)
            assert 2.0 * 2 ** (n - 1) / 2 <= wait_s <= 2.0 * 2 ** (n - 1)
        assert log.requeue(dead.delivery_id, clock.us())
        assert log.deliveries(status="pending")[0].attempts == 0


def test_a_refusing_answer_is_dead_lettered_at_once_and_retry_after_is_honoured(
    engine: Engine,
) -> None:
    clock = SimClock(NIGHT_START_US / S)
    answers = {"dev-400": (400, {}), "dev-429": (429, {"Retry-After": "120"})}

    def respond(hit: Hit) -> tuple[int, dict[str, str]]:
        return answers[CrampAlert.from_json(hit.body).device_id]

    with WebhookReceiver(free_port(), respond=respond) as receiver, httpx.Client() as http:
        subs = {d: [WebhookSubscription(f"s-{d}", "r", receiver.url, SECRET)] for d in answers}
        directory = Directory(subs)
        for device_id in answers:
            started_alert(engine, directory, clock, device_id)
        dispatcher = WebhookDispatcher(
            engine, directory, http=http, rng=np.random.default_rng(2), clock_s=clock
        )
        assert dispatcher.deliver_due() == 2
    log = DeliveryLog(engine)
    [refused] = log.deliveries(device_ids=["dev-400"])
    assert (refused.status, refused.attempts) == ("dead", 1)
    [throttled] = log.deliveries(device_ids=["dev-429"])
    assert throttled.status == "pending"
    assert throttled.next_attempt_us >= clock.us() + 120 * S  # Retry-After beats 1-2 s backoff
    assert throttled.last_status_code == 429


def test_an_insecure_or_removed_subscription_is_dead_lettered_without_a_request(
    engine: Engine,
) -> None:
    clock = SimClock(NIGHT_START_US / S)
    insecure = WebhookSubscription("s-http", "r", "http://alerts.example.org/hook", SECRET)
    directory = Directory({"dev-i": [insecure], "dev-gone": [insecure]})
    started_alert(engine, directory, clock, "dev-i")
    started_alert(engine, directory, clock, "dev-gone")
    directory.subscriptions["dev-gone"] = []
    with httpx.Client() as http:
        dispatcher = WebhookDispatcher(
            engine, directory, http=http, rng=np.random.default_rng(0), clock_s=clock
        )
        dispatcher.deliver_due()
    reasons = {d.device_id: d.last_error for d in DeliveryLog(engine).dead_letters()}
    assert reasons["dev-i"] is not None and reasons["dev-i"].startswith("insecure_url")
    assert reasons["dev-gone"] is not None and reasons["dev-gone"].startswith(
        "subscription_removed"
    )


def test_two_dispatchers_on_one_database_send_each_delivery_once(engine: Engine) -> None:
    clock = SimClock(NIGHT_START_US / S)
    with WebhookReceiver(free_port()) as receiver, httpx.Client() as http:
        subs = [WebhookSubscription(f"s{i}", f"r{i}", receiver.url, SECRET) for i in range(10)]
        directory = Directory({"dev-m": subs})
        started_alert(engine, directory, clock, "dev-m")
        dispatchers = [
            WebhookDispatcher(
                engine, directory, http=http, rng=np.random.default_rng(i), clock_s=clock
            )
            for i in range(2)
        ]
        threads = [threading.Thread(target=d.deliver_due) for d in dispatchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(receiver.hits) == 10
    assert {d.status for d in DeliveryLog(engine).deliveries()} == {"delivered"}


@given(
    attempt=st.integers(1, 80),
    base_s=st.floats(0.01, 100),
    factor=st.floats(1, 1000),
    seed=st.integers(0, 2**32 - 1),
)
def test_backoff_grows_exponentially_with_jitter_in_the_upper_half(
    attempt: int, base_s: float, factor: float, seed: int
) -> None:
    max_s = base_s * factor
    ceiling = min(max_s, base_s * 2.0 ** (attempt - 1))
    delay = backoff_delay_s(attempt, base_s, max_s, np.random.default_rng(seed))
    assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://clinic.example.org/hooks/1", True),
        ("http://127.0.0.1:9000/hook", True),
        ("http://clinic.example.org/hook", False),
        ("ftp://clinic.example.org/hook", False),
        ("https:///nohost", False),
    ],
)
def test_only_https_or_loopback_http_urls_receive_webhooks(url: str, allowed: bool) -> None:
    assert (url_problem(url) is None) is allowed


def test_a_delivery_over_https_checks_the_receivers_certificate(
    engine: Engine, tmp_path: Path
) -> None:
    clock = SimClock(time.time())
    tls, cert = self_signed_tls(tmp_path)
    with WebhookReceiver(free_port(), tls=tls) as receiver:
        assert receiver.url.startswith("https://")
        directory = Directory({"dev-s": [WebhookSubscription("s", "r", receiver.url, SECRET)]})
        started_alert(engine, directory, clock, "dev-s")
        with httpx.Client() as untrusting:  # the system CAs do not know this certificate
            WebhookDispatcher(
                engine, directory, http=untrusting, rng=np.random.default_rng(0), clock_s=clock
            ).deliver_due()
        assert receiver.hits == []
        [failed] = DeliveryLog(engine).deliveries()
        assert failed.status == "pending" and "ConnectError" in (failed.last_error or "")
        clock.sleep(10)
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as trusting:
            WebhookDispatcher(
                engine, directory, http=trusting, rng=np.random.default_rng(0), clock_s=clock
            ).deliver_due()
        [hit] = receiver.hits
    verify_signature(SECRET, hit.body, hit.headers[SIGNATURE_HEADER], now_s=time.time())
    assert DeliveryLog(engine).deliveries()[0].status == "delivered"
