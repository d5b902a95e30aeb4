"""The metadata database seen through the alerts' directory."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np

from alerts.directory import MetadataDirectory
from alerts.live import LiveAlertSink
from alerts.messages import AlertType, CrampAlert
from alerts.signing import SIGNATURE_HEADER, verify_signature
from alerts.webhooks import DeliveryLog, WebhookDispatcher
from storage.metadata import MetadataDB, Role
from tests.alerts.builders import NIGHT_START_US, S, WebhookReceiver, episode_events
from tests.servers import free_port


def test_owner_and_granted_clinician_webhooks_receive_the_devices_alerts(tmp_path: Path) -> None:
    db = MetadataDB(f"sqlite:///{tmp_path / 'meta.db'}")
    wearer = db.add_wearer("Ada", time_zone="Europe/London")
    other = db.add_wearer("Bob")
    clinician = db.add_clinician("Dr Who")
    stranger = db.add_clinician("Dr No")
    db.add_device("bed-7", wearer.wearer_id)
    db.grant(clinician.clinician_id, wearer.wearer_id, granted_by=Role.WEARER)
    own = db.add_webhook("https://ada.example.org/h", owner_role=Role.WEARER,
                         owner_id=wearer.wearer_id)  # fmt: skip
    clin = db.add_webhook("https://clinic.example.org/h", owner_role=Role.CLINICIAN,
                          owner_id=clinician.clinician_id)  # fmt: skip
    db.add_webhook("https://bob.example.org/h", owner_role=Role.WEARER, owner_id=other.wearer_id)
    db.add_webhook("https://no.example.org/h", owner_role=Role.CLINICIAN,
                   owner_id=stranger.clinician_id)  # fmt: skip
    directory = MetadataDirectory(db)
    subs = directory.webhooks_for_device("bed-7")
    assert {(s.subscription_id, s.recipient_id, s.secret) for s in subs} == {
        (own.webhook_id, wearer.wearer_id, own.secret),
        (clin.webhook_id, clinician.clinician_id, clin.secret),
    }
    assert directory.wearer_of("bed-7") == wearer.wearer_id
    assert directory.wearer_of("nope") is None

    # The alert tables live next to the metadata tables on the same engine.
    sink = LiveAlertSink(db.engine, None, directory=directory, wearer_of=directory.wearer_of)
    event = episode_events("bed-7", 0, 20)[0]
    sink.handle("bed-7", [event], event.at_us)
    recipients = {d.recipient_id for d in DeliveryLog(db.engine).deliveries()}
    assert recipients == {wearer.wearer_id, clinician.clinician_id}
    db.close()


def test_the_metadata_db_itself_serves_as_the_directory_end_to_end(tmp_path: Path) -> None:
    db = MetadataDB(f"sqlite:///{tmp_path / 'meta.db'}")
    wearer = db.add_wearer("Ada")
    db.add_device("bed-8", wearer.wearer_id)
    with WebhookReceiver(free_port()) as receiver, httpx.Client() as http:
        hook = db.add_webhook(receiver.url, owner_role=Role.WEARER, owner_id=wearer.wearer_id)
        sink = LiveAlertSink(db.engine, None, directory=db)
        for event in episode_events("bed-8", 0, 20):
            sink.handle("bed-8", [event], event.at_us)
        sink.tick(NIGHT_START_US + 40 * S)
        dispatcher = WebhookDispatcher(db.engine, db, http=http, rng=np.random.default_rng(0))
        assert dispatcher.deliver_due() == 2
    types = []
    for hit in receiver.hits:
        verify_signature(hook.secret, hit.body, hit.headers[SIGNATURE_HEADER], now_s=time.time())
        types.append(CrampAlert.from_json(hit.body).type)
    assert sorted(types) == [AlertType.CRAMP_ENDED, AlertType.CRAMP_STARTED]
    assert {d.recipient_id for d in DeliveryLog(db.engine).deliveries()} == {wearer.wearer_id}
    db.close()
