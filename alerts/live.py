"""Live cramp alerts: detector episode events → one alert lifecycle per cramp, on MQTT + webhooks.

A lifecycle opens at the first confirmed episode (``cramp.started`` goes out at once), absorbs any
further episode of the same device and site whose onset is within ``merge_gap_s`` of the previous
offset (a cramp that pauses and resumes is one alert), and resolves once the gap has passed with
no new episode (``cramp.ended`` with duration and intensity). It is resolved by whichever comes
first: device time (any later event of the device) or the sink's own clock (:meth:`tick`).

Every state change and the events it causes are committed in one transaction before anything is
sent; MQTT (QoS 1) and webhooks send from that outbox. Episode ids are deterministic, so a
restarted worker or a redelivered frame that replays an event finds its episode already linked
and sends nothing new; an event whose PUBACK was not seen is re-published with the same
``event_id`` (at-least-once; receivers drop repeated ``event_id`` values).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerts.messages import AlertMessageError, AlertType, CrampAlert, alerts_topic, stable_id
from alerts.models import AlertEpisodeLink, AlertLifecycle, AlertOutboxEvent, create_alert_tables
from alerts.mqtt_outbox import MqttOutbox, MqttPublisher
from alerts.outbox import OutboundEvent, OutboxRecord, record_event, to_record
from alerts.preferences import Channel, load_preferences, route
from alerts.webhooks import WebhookDirectory, WebhookSubscription, subscriptions_for
from detection.events import DetectorEvent, Episode, EpisodeEvent, EventKind

log = logging.getLogger(__name__)


class AlertStateUnavailable(RuntimeError):
    """The alert database could not be read or written; the events were not taken."""


@dataclass(frozen=True)
class LifecycleRecord:
    """An alert lifecycle as stored (device-clock µs for the cramp, wall-clock µs otherwise)."""

    alert_id: str
    device_id: str
    site: str
    state: str  # open | paused | closing | resolved
    first_episode_id: str
    episode_ids: tuple[str, ...]
    onset_us: int
    confirmed_us: int
    offset_us: int | None
    active_s: float
    peak_intensity: float
    created_us: int
    resolved_us: int | None


def wall_clock_us() -> int:
    """Current Unix time, µs."""
    return time.time_ns() // 1000


class LiveAlertSink:
    """Event sink for the ingest worker: ``handle(device_id, events, arrival_us)``.

    The sink reads the paused and closing lifecycles from the database once, then keeps that
    record up to date with its own transactions, and asks the database to resolve them only
    when one is due by it: it resolves the lifecycles that waited when it started and those it
    paused since. With several workers on one alert database, one that another sink resolved
    first is forgotten when the query no longer finds it.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        Database for the ``alert_*`` tables (created if missing).
    publisher : MqttPublisher or None
        Connected MQTT client with a running loop; None records events without MQTT.
    directory : WebhookDirectory or None
        Webhook subscriptions per device; None sends no webhooks.
    wearer_of : callable or None
        ``wearer_of(device_id)`` → recipient id whose preferences govern the device's MQTT alerts.
    merge_gap_s : float
        Episodes closer than this (offset → next onset, s) are one alert.
    publish_timeout_s : float
        How long ``handle`` waits for PUBACKs before leaving the rest to :meth:`tick`, s.
    republish_after_s : float
        An unacknowledged event is published again after this long, s.
    end_wait_s : float
        How long a lifecycle overtaken by a new cramp waits for its own end report before it
        resolves with the last known figures, s.
    clock_us : callable
        Wall clock, µs (injected in tests).
    on_webhook_work : callable or None
        Called after new webhook deliveries were committed (e.g. ``WebhookDispatcher.wake``).
    """

    def __init__(
        self,
        engine: Engine,
        publisher: MqttPublisher | None,
        *,
        directory: WebhookDirectory | None = None,
        wearer_of: Callable[[str], str | None] | None = None,
        merge_gap_s: float = 10.0,
        publish_timeout_s: float = 2.0,
        republish_after_s: float = 30.0,
        end_wait_s: float = 180.0,
        clock_us: Callable[[], int] = wall_clock_us,
        on_webhook_work: Callable[[], None] | None = None,
    ) -> None:
        if merge_gap_s < 0:
            raise ValueError(f"merge_gap_s must be >= 0, got {merge_gap_s}")
        self._engine = engine
        self._directory = directory
        self._wearer_of = wearer_of
        self._gap_us = int(merge_gap_s * 1_000_000)
        self._end_wait_us = int(end_wait_s * 1_000_000)
        self._clock_us = clock_us
        self._mqtt = MqttOutbox(
            engine,
            publisher,
            publish_timeout_s=publish_timeout_s,
            republish_after_s=republish_after_s,
            clock_us=clock_us,
        )
        self._on_webhook_work = on_webhook_work
        self._lock = threading.RLock()
        # paused and closing lifecycles by alert id as of the last transaction (None: unknown,
        # read from the database by the next one); kept up to date with every lifecycle a
        # transaction changes, so a device step with nothing due by them skips the query
        # that resolves them, and a call with nothing due at all skips the transaction
        self._waiting: dict[str, _Waiting] | None = None
        self._ticker: threading.Thread | None = None
        self._ticker_stop = threading.Event()
        create_alert_tables(engine)

    # ------------------------------------------------------------------ sink interface

    def handle(self, device_id: str, events: Sequence[DetectorEvent], arrival_us: int) -> None:
        """Turn a device's detector events into alerts; durable when it returns.

        Parameters
        ----------
        device_id : str
        events : sequence of DetectorEvent
            In the order the detector emitted them; quality events only advance device time.
        arrival_us : int
            Wall-clock µs when the frame that produced them arrived.

        Raises
        ------
        AlertStateUnavailable
            The alert database failed; nothing was taken (the caller may redeliver).
        """
        self._process([(device_id, events)], arrival_us)

    def handle_many(
        self, handoffs: Sequence[tuple[str, Sequence[DetectorEvent]]], arrival_us: int
    ) -> None:
        """:meth:`handle` of each ``(device_id, events)`` in turn, in one transaction (an
        ingest worker's batch); all of them are taken or, on AlertStateUnavailable, none."""
        self._process(handoffs, arrival_us)

    def tick(self, arrival_us: int | None = None) -> int:
        """Resolve lifecycles whose merge gap has passed by ``arrival_us`` (default: now).

        Also re-publishes events whose PUBACK was not seen (at most once a second). Returns
        the number of events acknowledged by the broker during this call.
        """
        return self._process((), self._clock_us() if arrival_us is None else arrival_us)

    def _process(
        self, handoffs: Sequence[tuple[str, Sequence[DetectorEvent]]], arrival_us: int
    ) -> int:
        """One transaction: each device's episode events, then its due lifecycles; with no
        handoffs (a tick), the lifecycles due by the wall clock alone."""
        now_us = self._clock_us()
        steps = [_device_step(device_id, events) for device_id, events in handoffs]
        if not steps:
            steps = [_Step(None, [], None)]
        with self._lock:
            outbound: list[OutboundEvent] = []
            webhooks = False
            waiting = self._waiting
            if (
                waiting is None
                or any(step.episode_events for step in steps)
                or any(
                    self._any_due(waiting, step.device_id, step.device_now_us, arrival_us)
                    for step in steps
                )
            ):
                self._waiting = None  # unknown until the transaction commits
                try:
                    with Session(self._engine) as session, session.begin():
                        context = _Context(session, now_us, arrival_us, outbound, {})
                        context.loaded = _load_known(session, steps)
                        context.waiting = (
                            dict(waiting) if waiting is not None else self._load_waiting(session)
                        )
                        for step in steps:
                            self._take(context, step)
                        webhooks = context.webhooks_added
                except SQLAlchemyError as exc:
                    raise AlertStateUnavailable(f"alert state not written: {exc}") from exc
                self._waiting = context.waiting
            return self._after_commit(outbound, webhooks, now_us)

    def _take(self, ctx: _Context, step: _Step) -> None:
        """One device's part of a transaction, as if it were a transaction of its own."""
        for event in step.episode_events:
            self._apply(ctx, event)
        _note_changes(ctx, self._hold_us)
        if self._any_due(ctx.waiting, step.device_id, step.device_now_us, ctx.arrival_us):
            self._resolve_due(ctx, step.device_id, step.device_now_us)
            _note_changes(ctx, self._hold_us)
            # The query found every due lifecycle, so one still noted as due was resolved by
            # another sink on the same database (another worker): forget it.
            for alert_id, w in list(ctx.waiting.items()):
                if self._due(w, step.device_id, step.device_now_us, ctx.arrival_us):
                    del ctx.waiting[alert_id]

    def start_ticker(self, interval_s: float = 1.0) -> None:
        """Call :meth:`tick` every ``interval_s`` in a daemon thread until :meth:`stop`."""
        if self._ticker is not None and self._ticker.is_alive():
            return
        self._ticker_stop.clear()

        def run() -> None:
            while not self._ticker_stop.wait(interval_s):
                try:
                    self.tick()
                except AlertStateUnavailable as exc:
                    log.warning("alert tick failed: %s", exc)

        self._ticker = threading.Thread(target=run, name="alert-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        """Stop the ticker thread, if any."""
        self._ticker_stop.set()
        if self._ticker is not None:
            self._ticker.join(10)
            self._ticker = None

    # ------------------------------------------------------------------ queries

    def lifecycles(
        self, device_id: str | None = None, state: str | None = None
    ) -> list[LifecycleRecord]:
        """Stored lifecycles by onset, optionally of one device and/or in one state."""
        query = select(AlertLifecycle).order_by(
            AlertLifecycle.onset_device_us, AlertLifecycle.alert_id
        )
        if device_id is not None:
            query = query.where(AlertLifecycle.device_id == device_id)
        if state is not None:
            query = query.where(AlertLifecycle.state == state)
        with Session(self._engine) as session:
            rows = session.scalars(query).all()
            links = session.scalars(
                select(AlertEpisodeLink).where(
                    AlertEpisodeLink.alert_id.in_([r.alert_id for r in rows])
                )
            ).all()
            by_alert: dict[str, list[str]] = {}
            for link in links:
                by_alert.setdefault(link.alert_id, []).append(link.episode_id)
            return [_lifecycle_record(row, by_alert.get(row.alert_id, [])) for row in rows]

    def outbox(self, device_id: str | None = None) -> list[OutboxRecord]:
        """Recorded events by creation time, optionally of one device."""
        query = select(AlertOutboxEvent).order_by(
            AlertOutboxEvent.created_us, AlertOutboxEvent.event_id
        )
        if device_id is not None:
            query = query.where(AlertOutboxEvent.device_id == device_id)
        with Session(self._engine) as session:
            return [to_record(row) for row in session.scalars(query)]

    # ------------------------------------------------------------------ lifecycle rules

    def _apply(self, ctx: _Context, event: EpisodeEvent) -> None:
        episode = event.episode
        session = ctx.session
        link = session.get(AlertEpisodeLink, episode.episode_id)
        if link is not None:
            if link.ended:
                return  # a replay of an episode that is already closed
            lifecycle = session.get(AlertLifecycle, link.alert_id)
            if lifecycle is None or lifecycle.state == "resolved":
                return
            ctx.changed[lifecycle.alert_id] = lifecycle
        else:
            lifecycle = self._lifecycle_for(ctx, episode)
            link = AlertEpisodeLink(
                episode_id=episode.episode_id, alert_id=lifecycle.alert_id, ended=False
            )
            session.add(link)
            session.flush()
            ctx.changed[lifecycle.alert_id] = lifecycle
        lifecycle.peak_intensity = max(lifecycle.peak_intensity, episode.peak_intensity)
        if episode.peak_mvc_pct is not None:
            lifecycle.peak_mvc_pct = max(lifecycle.peak_mvc_pct or 0.0, episode.peak_mvc_pct)
        if event.kind is EventKind.ENDED or episode.offset_us is not None:
            link.ended = True
            lifecycle.active_s += episode.duration_s
            lifecycle.intensity_seconds += episode.mean_intensity * episode.duration_s
            offset_us = episode.offset_us if episode.offset_us is not None else event.at_us
            lifecycle.offset_device_us = max(lifecycle.offset_device_us or offset_us, offset_us)
            if lifecycle.active_episode_id in (None, episode.episode_id):
                lifecycle.active_episode_id = None
                lifecycle.active_onset_us = None
                lifecycle.active_seen_us = None
                lifecycle.open_episode_s = 0.0
                if lifecycle.state == "closing":
                    self._resolve(ctx, lifecycle)
                else:
                    lifecycle.state = "paused"
                    lifecycle.paused_at_us = ctx.arrival_us
        elif lifecycle.active_episode_id == episode.episode_id:
            lifecycle.active_seen_us = max(lifecycle.active_seen_us or event.at_us, event.at_us)
            lifecycle.open_episode_s = episode.duration_s
        elif lifecycle.active_episode_id is None or episode.onset_us > (
            lifecycle.active_onset_us or 0
        ):
            lifecycle.active_episode_id = episode.episode_id
            lifecycle.active_onset_us = episode.onset_us
            lifecycle.active_seen_us = event.at_us
            lifecycle.open_episode_s = episode.duration_s

    def _lifecycle_for(self, ctx: _Context, episode: Episode) -> AlertLifecycle:
        """The live lifecycle a new episode joins, or a new one (announced at once).

        The detector reports an episode's end late (it first watches whether the wearer gets
        up), so a new episode can start while the previous one still looks open; the previous
        offset is then estimated from its latest report, and a lifecycle that the new episode
        does not join waits in ``closing`` for that end before it resolves.
        """
        session = ctx.session
        current = session.scalars(
            select(AlertLifecycle)
            .where(
                AlertLifecycle.device_id == episode.device_id,
                AlertLifecycle.site == episode.site,
                AlertLifecycle.state.in_(("open", "paused")),
            )
            .order_by(AlertLifecycle.onset_device_us.desc())
        ).first()
        if current is not None:
            ctx.changed[current.alert_id] = current
            last_offset_us = _offset_estimate_us(current)
            if episode.onset_us - last_offset_us < self._gap_us or (
                current.state == "open" and episode.onset_us <= last_offset_us
            ):
                current.state = "open"
                current.paused_at_us = None
                current.episode_count += 1
                return current
            if current.state == "open":
                current.state = "closing"
                current.paused_at_us = ctx.arrival_us
            else:
                self._resolve(ctx, current)
        alert_id = stable_id("alert", episode.episode_id)
        lifecycle = AlertLifecycle(
            alert_id=alert_id,
            device_id=episode.device_id,
            site=episode.site,
            state="open",
            first_episode_id=episode.episode_id,
            active_episode_id=episode.episode_id,
            active_onset_us=episode.onset_us,
            active_seen_us=episode.confirmed_us,
            onset_device_us=episode.onset_us,
            confirmed_device_us=episode.confirmed_us,
            offset_device_us=None,
            active_s=0.0,
            open_episode_s=episode.duration_s,
            peak_intensity=episode.peak_intensity,
            intensity_seconds=0.0,
            peak_mvc_pct=episode.peak_mvc_pct,
            confidence=episode.confidence,
            episode_count=1,
            paused_at_us=None,
            created_us=ctx.now_us,
            resolved_us=None,
        )
        session.add(lifecycle)
        started = CrampAlert(
            type=AlertType.CRAMP_STARTED,
            event_id=stable_id(alert_id, str(AlertType.CRAMP_STARTED)),
            alert_id=alert_id,
            device_id=episode.device_id,
            site=episode.site,
            episode_id=episode.episode_id,
            episode_ids=(episode.episode_id,),
            onset_us=episode.onset_us,
            confirmed_us=episode.confirmed_us,
            offset_us=None,
            duration_s=None,
            active_s=episode.duration_s,
            peak_intensity=episode.peak_intensity,
            mean_intensity=episode.mean_intensity,
            peak_mvc_pct=episode.peak_mvc_pct,
            confidence=episode.confidence,
            emitted_us=ctx.now_us,
        )
        self._emit(ctx, started)
        return lifecycle

    def _hold_us(self, onset_us: int, confirmed_us: int) -> int:
        """How long a paused lifecycle waits past its pause (wall clock) or its offset (device
        time) before it resolves, µs: the merge gap plus its confirmation delay."""
        return self._gap_us + (confirmed_us - onset_us) if self._gap_us > 0 else 0

    def _load_waiting(self, session: Session) -> dict[str, _Waiting]:
        rows = session.execute(
            select(
                AlertLifecycle.alert_id,
                AlertLifecycle.device_id,
                AlertLifecycle.state,
                AlertLifecycle.paused_at_us,
                AlertLifecycle.offset_device_us,
                AlertLifecycle.onset_device_us,
                AlertLifecycle.confirmed_device_us,
            ).where(AlertLifecycle.state.in_(("paused", "closing")))
        ).all()
        return {
            alert_id: _Waiting(device, state, paused_at, offset, self._hold_us(onset, confirmed))
            for alert_id, device, state, paused_at, offset, onset, confirmed in rows
        }

    def _any_due(
        self,
        waiting: dict[str, _Waiting] | None,
        device_id: str | None,
        device_now_us: int | None,
        arrival_us: int,
    ) -> bool:
        """Whether :meth:`_resolve_due` could find a lifecycle to resolve, judged from the
        ``waiting`` lifecycles (True when they are unknown). The same conditions as its
        query, so a False here means the query would find nothing."""
        if waiting is None:
            return True
        return any(self._due(w, device_id, device_now_us, arrival_us) for w in waiting.values())

    def _due(
        self, w: _Waiting, device_id: str | None, device_now_us: int | None, arrival_us: int
    ) -> bool:
        """Whether the resolving query of :meth:`_resolve_due` would find ``w``."""
        if w.state == "closing":
            return w.paused_at_us is not None and w.paused_at_us + self._end_wait_us <= arrival_us
        return (w.paused_at_us is not None and w.paused_at_us + w.hold_us <= arrival_us) or (
            w.device_id == device_id
            and device_now_us is not None
            and w.offset_device_us is not None
            and w.offset_device_us + w.hold_us <= device_now_us
        )

    def _resolve_due(self, ctx: _Context, device_id: str | None, device_now_us: int | None) -> None:
        # Hold for the gap plus the lifecycle's confirmation delay: an episode resuming just
        # inside the gap is only confirmed (and handed in) that much later.
        hold_us: Any = 0
        if self._gap_us > 0:
            confirm_delay_us = AlertLifecycle.confirmed_device_us - AlertLifecycle.onset_device_us
            hold_us = self._gap_us + confirm_delay_us
        by_wall_clock = AlertLifecycle.paused_at_us + hold_us <= ctx.arrival_us
        condition = by_wall_clock
        if device_id is not None and device_now_us is not None:
            condition = or_(
                by_wall_clock,
                (AlertLifecycle.device_id == device_id)
                & (AlertLifecycle.offset_device_us + hold_us <= device_now_us),
            )
        waited_too_long = (AlertLifecycle.state == "closing") & (
            AlertLifecycle.paused_at_us + self._end_wait_us <= ctx.arrival_us
        )
        due = ctx.session.scalars(
            select(AlertLifecycle)
            .where(or_((AlertLifecycle.state == "paused") & condition, waited_too_long))
            .order_by(AlertLifecycle.onset_device_us)
        ).all()
        for lifecycle in due:
            self._resolve(ctx, lifecycle)

    def _resolve(self, ctx: _Context, lifecycle: AlertLifecycle) -> None:
        if lifecycle.active_episode_id is not None:  # its end never came: use what is known
            lifecycle.offset_device_us = _offset_estimate_us(lifecycle)
            lifecycle.active_s += lifecycle.open_episode_s
            lifecycle.active_episode_id = None
            lifecycle.open_episode_s = 0.0
        lifecycle.state = "resolved"
        lifecycle.resolved_us = ctx.now_us
        ctx.changed[lifecycle.alert_id] = lifecycle
        offset_us = lifecycle.offset_device_us or lifecycle.onset_device_us
        episode_ids = tuple(
            ctx.session.scalars(
                select(AlertEpisodeLink.episode_id)
                .where(AlertEpisodeLink.alert_id == lifecycle.alert_id)
                .order_by(AlertEpisodeLink.episode_id)
            ).all()
        )
        mean = (
            lifecycle.intensity_seconds / lifecycle.active_s
            if lifecycle.active_s > 0
            else lifecycle.peak_intensity
        )
        ended = CrampAlert(
            type=AlertType.CRAMP_ENDED,
            event_id=stable_id(lifecycle.alert_id, str(AlertType.CRAMP_ENDED)),
            alert_id=lifecycle.alert_id,
            device_id=lifecycle.device_id,
            site=lifecycle.site,
            episode_id=lifecycle.first_episode_id,
            episode_ids=episode_ids,
            onset_us=lifecycle.onset_device_us,
            confirmed_us=lifecycle.confirmed_device_us,
            offset_us=offset_us,
            duration_s=(offset_us - lifecycle.onset_device_us) / 1_000_000,
            active_s=lifecycle.active_s,
            peak_intensity=lifecycle.peak_intensity,
            mean_intensity=mean,
            peak_mvc_pct=lifecycle.peak_mvc_pct,
            confidence=lifecycle.confidence,
            emitted_us=ctx.now_us,
        )
        self._emit(ctx, ended)

    # ------------------------------------------------------------------ channels

    def _emit(self, ctx: _Context, alert: CrampAlert) -> None:
        try:
            topic: str | None = alerts_topic(alert.device_id)
        except AlertMessageError as exc:
            log.warning("no MQTT alert for %r: %s", alert.device_id, exc)
            topic = None
        wearer = self._wearer_of(alert.device_id) if self._wearer_of is not None else None
        subscriptions = ctx.subscriptions.get(alert.device_id)
        if subscriptions is None:
            subscriptions = (
                subscriptions_for(self._directory, alert.device_id)
                if self._directory is not None
                else []
            )
            ctx.subscriptions[alert.device_id] = subscriptions
        recipients = {s.recipient_id for s in subscriptions} | ({wearer} if wearer else set())
        prefs = load_preferences(ctx.session, sorted(recipients))
        mqtt_route = route(
            prefs.get(wearer) if wearer else None, alert.type, Channel.MQTT, ctx.now_us
        )
        if not mqtt_route.send:
            topic = None
        event = OutboundEvent(alert.event_id, alert.type, alert.device_id, alert.to_json(), topic)
        # One µs apart, so the outbox keeps the order events were emitted in.
        created_us = ctx.now_us + len(ctx.outbound)
        if record_event(ctx.session, event, subscriptions, prefs, created_us):
            ctx.outbound.append(event)
            ctx.webhooks_added = ctx.webhooks_added or bool(subscriptions)

    def _after_commit(self, outbound: list[OutboundEvent], webhooks: bool, now_us: int) -> int:
        if webhooks and self._on_webhook_work is not None:
            self._on_webhook_work()
        return self._mqtt.publish(outbound, now_us) + self._mqtt.republish_due(now_us)


@dataclass
class _Context:
    """What one transaction of :class:`LiveAlertSink` accumulates."""

    session: Session
    now_us: int
    arrival_us: int
    outbound: list[OutboundEvent]
    subscriptions: dict[str, list[WebhookSubscription]]
    webhooks_added: bool = False
    loaded: list[object] = field(default_factory=list)  # rows held for the session's lookups
    # the paused and closing lifecycles as the transaction leaves them (see ``_note_changes``)
    waiting: dict[str, _Waiting] = field(default_factory=dict)
    # lifecycles created or changed since the last ``_note_changes``, by alert id
    changed: dict[str, AlertLifecycle] = field(default_factory=dict)


@dataclass(frozen=True)
class _Waiting:
    """A paused or closing lifecycle: what deciding whether it is due needs."""

    device_id: str
    state: str
    paused_at_us: int | None  # wall clock
    offset_device_us: int | None
    hold_us: int  # see LiveAlertSink._hold_us


@dataclass(frozen=True)
class _Step:
    """One device's events of a transaction: its episode events and its latest device time."""

    device_id: str | None
    episode_events: list[EpisodeEvent]
    device_now_us: int | None


def _note_changes(ctx: _Context, hold_us: Callable[[int, int], int]) -> None:
    """Bring ``ctx.waiting`` up to date with the lifecycles changed since the last call
    (``hold_us``: :meth:`LiveAlertSink._hold_us`). Every change of a lifecycle goes through
    the sink's rules, which note the lifecycle in ``ctx.changed``."""
    for alert_id, lifecycle in ctx.changed.items():
        if lifecycle.state in ("paused", "closing"):
            ctx.waiting[alert_id] = _Waiting(
                lifecycle.device_id,
                lifecycle.state,
                lifecycle.paused_at_us,
                lifecycle.offset_device_us,
                hold_us(lifecycle.onset_device_us, lifecycle.confirmed_device_us),
            )
        else:
            ctx.waiting.pop(alert_id, None)
    ctx.changed.clear()


def _device_step(device_id: str, events: Sequence[DetectorEvent]) -> _Step:
    """The episode events of ``device_id`` (others are dropped with a warning) and the latest
    device time of all its events (quality events only advance device time)."""
    episode_events: list[EpisodeEvent] = []
    device_now_us: int | None = None
    for event in events:
        device_now_us = event.at_us if device_now_us is None else max(device_now_us, event.at_us)
        if not isinstance(event, EpisodeEvent):
            continue
        if event.episode.device_id != device_id:
            log.warning("event of %r handed in for %r; dropped", event.episode.device_id, device_id)
            continue
        episode_events.append(event)
    return _Step(device_id, episode_events, device_now_us)


def _load_known(session: Session, steps: Sequence[_Step]) -> list[object]:
    """Load the links of the transaction's episodes and their lifecycles in two queries, so
    that the ``session.get`` of each event finds them in the session (most events are
    updates of an episode already linked). The caller holds the returned rows for the
    transaction: the session keeps unchanged rows only while something refers to them."""
    episode_ids = sorted({e.episode.episode_id for step in steps for e in step.episode_events})
    rows: list[object] = []
    for part in _parts(episode_ids):
        rows.extend(
            session.scalars(
                select(AlertEpisodeLink).where(AlertEpisodeLink.episode_id.in_(part))
            ).all()
        )
    alert_ids = sorted({row.alert_id for row in rows if isinstance(row, AlertEpisodeLink)})
    for part in _parts(alert_ids):
        rows.extend(
            session.scalars(select(AlertLifecycle).where(AlertLifecycle.alert_id.in_(part))).all()
        )
    return rows


def _parts(keys: list[str], size: int = 500) -> list[list[str]]:
    """``keys`` in lists of at most ``size`` (bound parameters per statement stay few)."""
    return [keys[k : k + size] for k in range(0, len(keys), size)]


def _offset_estimate_us(lifecycle: AlertLifecycle) -> int:
    """Latest known device time of the lifecycle's contraction (a lower bound while open)."""
    known = lifecycle.offset_device_us or lifecycle.onset_device_us
    if lifecycle.active_episode_id is None or lifecycle.active_onset_us is None:
        return known
    so_far_us = lifecycle.active_onset_us + int(lifecycle.open_episode_s * 1_000_000)
    return max(known, so_far_us, lifecycle.active_seen_us or 0)


def _lifecycle_record(row: AlertLifecycle, episode_ids: list[str]) -> LifecycleRecord:
    return LifecycleRecord(
        alert_id=row.alert_id,
        device_id=row.device_id,
        site=row.site,
        state=row.state,
        first_episode_id=row.first_episode_id,
        episode_ids=tuple(sorted(episode_ids)),
        onset_us=row.onset_device_us,
        confirmed_us=row.confirmed_device_us,
        offset_us=row.offset_device_us,
        active_s=row.active_s + row.open_episode_s,
        peak_intensity=row.peak_intensity,
        created_us=row.created_us,
        resolved_us=row.resolved_us,
    )
