"""Cramp rules: what becomes an episode, when, and what the look-alikes do instead."""

from __future__ import annotations

import numpy as np
import pytest

from detection import DetectorConfig, StreamDetector, detect_recording
from detection.events import EpisodeEvent, EventKind, Movement, QualityFlag
from tests.detection import synth

ACC_RATE = 50.0


@pytest.mark.parametrize(
    ("rate_hz", "amplitude_uv", "rest_uv"),
    [
        (500.0, 25.0, 2.0),
        (500.0, 1000.0, 8.0),
        (1000.0, 20.0, 1.5),
        (1000.0, 120.0, 3.0),
        (1024.0, 60.0, 5.0),
        (2000.0, 300.0, 10.0),
        (4000.0, 30.0, 3.0),
        (4000.0, 800.0, 6.0),
    ],
)
def test_cramp_is_found_with_onset_confirmation_and_offset(
    rate_hz: float, amplitude_uv: float, rest_uv: float
) -> None:
    rng = np.random.default_rng(round(rate_hz + amplitude_uv))
    night = synth.cramp_night(
        rng,
        rate_hz=rate_hz,
        amplitude_uv=amplitude_uv,
        rest_uv=rest_uv,
        duration_s=70.0,
        onset_s=25.0,
        cramp_s=20.0,
    )
    result = detect_recording(night.emg_uv, rate_hz, night.acc_g, ACC_RATE)
    [episode] = result.episodes
    assert abs(episode.onset_us / 1e6 - 25.0) <= 0.5
    assert episode.confirmed_us - episode.onset_us <= 5_000_000
    assert abs(episode.offset_us / 1e6 - 45.0) <= 1.5
    assert episode.movement is Movement.STILL
    assert episode.mean_intensity > 2.0 and episode.peak_intensity >= episode.mean_intensity
    assert 0.0 < episode.confidence <= 1.0
    assert episode.episode_id == f"offline:{episode.onset_us}"


def test_multichannel_uses_the_channel_that_sees_the_cramp() -> None:
    rng = np.random.default_rng(4)
    night = synth.cramp_night(rng, amplitude_uv=80.0, acc_rate_hz=None)
    quiet = synth.rest(rng, 90.0, 1000.0, rest_uv=3.0)
    lead_off = np.zeros_like(quiet)
    emg = np.stack([quiet, night.emg_uv, lead_off], axis=1)
    result = detect_recording(emg, 1000.0)
    [episode] = result.episodes
    assert abs(episode.onset_us / 1e6 - 40.0) <= 0.5
    assert QualityFlag.LEAD_OFF in {q.flag for q in result.quality}


def test_turning_over_is_not_a_cramp() -> None:
    rng = np.random.default_rng(10)
    x = synth.rest(rng, 60.0, 1000.0)
    x = synth.add_burst(rng, x, 1000.0, 20.0, 6.0, 150.0, ramp_s=0.3, taper_s=0.5)
    acc = synth.turn_over(
        rng, synth.accelerometer(rng, 60.0, ACC_RATE), ACC_RATE, 20.2, synth.LEFT_UP
    )
    assert detect_recording(x, 1000.0, acc, ACC_RATE).episodes == []
    # the same EMG with a still limb is a cramp
    still = synth.accelerometer(rng, 60.0, ACC_RATE)
    assert len(detect_recording(x, 1000.0, still, ACC_RATE).episodes) == 1


def test_voluntary_leg_movement_is_not_a_cramp() -> None:
    rng = np.random.default_rng(12)
    x = synth.rest(rng, 60.0, 1000.0)
    x = synth.add_burst(rng, x, 1000.0, 20.0, 8.0, 150.0, ramp_s=0.3, taper_s=0.5)
    acc = synth.kick(rng, synth.accelerometer(rng, 60.0, ACC_RATE), ACC_RATE, 19.8, 3.0)
    assert detect_recording(x, 1000.0, acc, ACC_RATE).episodes == []


def test_movement_after_a_confirmed_cramp_marks_it_moving() -> None:
    rng = np.random.default_rng(13)
    night = synth.cramp_night(rng, onset_s=20.0, cramp_s=30.0, duration_s=60.0)
    acc = synth.kick(rng, night.acc_g, ACC_RATE, 35.0, 3.0)  # stretching the leg mid-cramp
    [episode] = detect_recording(night.emg_uv, 1000.0, acc, ACC_RATE).episodes
    assert episode.movement is Movement.MOVING


def test_periodic_limb_movements_are_not_cramps() -> None:
    rng = np.random.default_rng(14)
    x = synth.rest(rng, 200.0, 1000.0)
    for k in range(8):  # 2-3.5 s bursts every 20 s (WASM: 0.5-10 s, 5-90 s apart)
        x = synth.add_burst(
            rng, x, 1000.0, 10.0 + 20.0 * k, 2.0 + 0.5 * (k % 4), 80.0, ramp_s=0.3, taper_s=0.3
        )
    x = synth.add_burst(rng, x, 1000.0, 170.0, 8.0, 80.0, ramp_s=0.3, taper_s=0.3)  # long LM
    acc = synth.accelerometer(rng, 200.0, ACC_RATE)
    assert detect_recording(x, 1000.0, acc, ACC_RATE).episodes == []


def test_a_cramp_in_a_plm_series_is_found_once_it_outlasts_a_limb_movement() -> None:
    rng = np.random.default_rng(15)
    x = synth.rest(rng, 150.0, 1000.0)
    for k in range(4):
        x = synth.add_burst(rng, x, 1000.0, 10.0 + 20.0 * k, 2.0, 80.0, ramp_s=0.3, taper_s=0.3)
    x = synth.add_burst(rng, x, 1000.0, 100.0, 30.0, 120.0)
    [episode] = detect_recording(x, 1000.0).episodes
    assert abs(episode.onset_us / 1e6 - 100.0) <= 0.5
    assert 11_000_000 < episode.confirmed_us - episode.onset_us <= 12_000_000


def test_twitches_are_not_cramps() -> None:
    rng = np.random.default_rng(16)
    x = synth.rest(rng, 60.0, 2000.0)
    for k in range(15):
        x = synth.add_burst(rng, x, 2000.0, 5.0 + 3.1 * k, 0.3, 400.0, ramp_s=0.05, taper_s=0.05)
    assert detect_recording(x, 2000.0).episodes == []


def test_walking_after_getting_up_is_not_a_cramp() -> None:
    rng = np.random.default_rng(17)
    x = synth.rest(rng, 60.0, 1000.0)
    for k in range(30):
        x = synth.add_burst(rng, x, 1000.0, 10.0 + k, 0.5, 100.0, ramp_s=0.1, taper_s=0.1)
    acc = synth.accelerometer(rng, 60.0, ACC_RATE, synth.UPRIGHT_UP)
    acc = synth.kick(rng, acc, ACC_RATE, 10.0, 30.0)
    assert detect_recording(x, 1000.0, acc, ACC_RATE).episodes == []


def test_getting_up_after_a_cramp_is_noted_on_the_cramp() -> None:
    rng = np.random.default_rng(18)
    night = synth.cramp_night(rng, duration_s=150.0)
    up = synth.turn_over(rng, night.acc_g, ACC_RATE, 80.0, synth.UPRIGHT_UP)
    [got_up] = detect_recording(night.emg_uv, 1000.0, up, ACC_RATE).episodes
    [stayed] = detect_recording(night.emg_uv, 1000.0, night.acc_g, ACC_RATE).episodes
    [unknown] = detect_recording(night.emg_uv, 1000.0).episodes
    assert got_up.got_up_after is True
    assert stayed.got_up_after is False
    assert unknown.got_up_after is None
    assert QualityFlag.NO_ACC in unknown.quality_flags
    assert unknown.movement is Movement.UNKNOWN


def test_low_frequency_artifact_without_emg_spectrum_is_rejected() -> None:
    rng = np.random.default_rng(19)
    x = synth.rest(rng, 60.0, 1000.0)
    t = np.arange(x.shape[0]) / 1000.0
    # 25 Hz electrode wobble: passes the band-pass edge but has no EMG spectrum
    x = x + np.where((t > 20) & (t < 30), 60.0 * np.sin(2 * np.pi * 25.0 * t), 0.0)
    result = detect_recording(x, 1000.0)
    assert result.episodes == []
    [artifact] = [q for q in result.quality if q.flag is QualityFlag.MOTION_ARTIFACT]
    assert artifact.end_us is not None
    assert abs(artifact.start_us - 20_000_000) <= 500_000
    assert abs(artifact.end_us - 30_000_000) <= 1_000_000


def test_mvc_calibration_gives_percent_mvc() -> None:
    rng = np.random.default_rng(20)
    night = synth.cramp_night(rng, amplitude_uv=100.0)
    [episode] = detect_recording(night.emg_uv, 1000.0, night.acc_g, ACC_RATE, mvc_uv=200.0).episodes
    assert episode.mean_mvc_pct is not None and episode.peak_mvc_pct is not None
    assert 25.0 < episode.mean_mvc_pct < 75.0
    assert episode.peak_mvc_pct > episode.mean_mvc_pct


def test_events_tell_the_episode_lifecycle_live() -> None:
    rng = np.random.default_rng(21)
    night = synth.cramp_night(rng, onset_s=20.0, cramp_s=30.0, duration_s=120.0)
    detector = StreamDetector("d", "left-calf")
    events = []
    for second in range(120):
        events += detector.push_acc(
            night.acc_g[second * 50 : (second + 1) * 50], second * 1_000_000, ACC_RATE
        )
        chunk = night.emg_uv[second * 1000 : (second + 1) * 1000]
        for event in detector.push_emg(chunk, second * 1_000_000, 1000.0):
            events.append(event)
            if isinstance(event, EpisodeEvent) and event.kind is EventKind.STARTED:
                # announced in real time: within the second after the decision time
                assert event.at_us <= (second + 1) * 1_000_000
    events += detector.finish()
    episode_events = [e for e in events if isinstance(e, EpisodeEvent)]
    kinds = [e.kind for e in episode_events]
    assert kinds[0] is EventKind.STARTED and kinds[-1] is EventKind.ENDED
    assert 4 <= kinds.count(EventKind.UPDATED) <= 6
    durations = [e.episode.duration_s for e in episode_events]
    assert durations == sorted(durations)
    final = episode_events[-1].episode
    assert final.site == "left-calf" and final.got_up_after is False
    assert episode_events[-1].at_us == final.offset_us + 60_000_000


def test_stricter_config_is_respected() -> None:
    rng = np.random.default_rng(22)
    night = synth.cramp_night(rng, amplitude_uv=20.0, rest_uv=3.0)
    strict = DetectorConfig(on_ratio=20.0, off_ratio=10.0, back_ratio=5.0)
    assert detect_recording(night.emg_uv, 1000.0, config=strict).episodes == []
    assert len(detect_recording(night.emg_uv, 1000.0).episodes) == 1


def test_stretching_after_a_cramp_is_not_a_new_cramp() -> None:
    rng = np.random.default_rng(23)
    x = synth.rest(rng, 120.0, 1000.0)
    x = synth.add_burst(rng, x, 1000.0, 20.0, 30.0, 200.0)
    x = synth.add_burst(rng, x, 1000.0, 65.0, 25.0, 30.0, ramp_s=3.0, taper_s=3.0)  # stretching
    acc = synth.accelerometer(rng, 120.0, ACC_RATE)
    [episode] = detect_recording(x, 1000.0, acc, ACC_RATE).episodes
    assert abs(episode.onset_us / 1e6 - 20.0) <= 0.5


def test_a_strong_recurrence_soon_after_a_cramp_is_a_new_cramp() -> None:
    rng = np.random.default_rng(24)
    x = synth.rest(rng, 120.0, 1000.0)
    x = synth.add_burst(rng, x, 1000.0, 20.0, 30.0, 200.0)
    x = synth.add_burst(rng, x, 1000.0, 65.0, 25.0, 250.0)
    acc = synth.accelerometer(rng, 120.0, ACC_RATE)
    episodes = detect_recording(x, 1000.0, acc, ACC_RATE).episodes
    assert [round(e.onset_us / 1e6) for e in episodes] == [20, 65]


def test_a_cramp_whose_foot_moves_after_onset_is_still_a_cramp() -> None:
    rng = np.random.default_rng(25)
    night = synth.cramp_night(rng, onset_s=20.0, cramp_s=30.0, duration_s=60.0, amplitude_uv=60.0)
    acc = synth.kick(rng, night.acc_g, ACC_RATE, 21.5, 20.0)  # the contraction moves the foot
    [episode] = detect_recording(night.emg_uv, 1000.0, acc, ACC_RATE).episodes
    assert episode.movement is Movement.MOVING


def test_a_rise_of_the_resting_level_does_not_hold_a_burst_open() -> None:
    rng = np.random.default_rng(26)
    x = synth.rest(rng, 150.0, 1000.0, rest_uv=3.0)
    louder = synth.rest(rng, 150.0, 1000.0, rest_uv=6.5, dc_uv=0.0)
    x[60_000:] += louder[60_000:]  # the resting EMG doubles (another posture, lighter sleep)
    x = synth.add_burst(rng, x, 1000.0, 90.0, 0.3, 300.0, ramp_s=0.05, taper_s=0.05)  # a twitch
    assert detect_recording(x, 1000.0).episodes == []


def test_getting_up_during_a_cramp_ends_it() -> None:
    rng = np.random.default_rng(27)
    night = synth.cramp_night(rng, onset_s=20.0, cramp_s=60.0, duration_s=100.0)
    up = synth.turn_over(rng, night.acc_g, ACC_RATE, 50.0, synth.UPRIGHT_UP, duration_s=1.0)
    [episode] = detect_recording(night.emg_uv, 1000.0, up, ACC_RATE).episodes
    assert episode.got_up_after is True
    assert 49.0 <= episode.offset_us / 1e6 <= 52.0


@pytest.mark.parametrize(("burst_s", "is_cramp"), [(8.0, False), (30.0, True)])
def test_light_movement_at_onset_must_outlast_a_leg_movement(
    burst_s: float, is_cramp: bool
) -> None:
    rng = np.random.default_rng(28)
    x = synth.rest(rng, 70.0, 1000.0)
    x = synth.add_burst(rng, x, 1000.0, 20.0, burst_s, 100.0, ramp_s=0.3, taper_s=0.3)
    acc = synth.kick(rng, synth.accelerometer(rng, 70.0, ACC_RATE), ACC_RATE, 19.8, 1.5, 0.03)
    episodes = detect_recording(x, 1000.0, acc, ACC_RATE).episodes
    assert len(episodes) == int(is_cramp)
    if is_cramp:
        assert episodes[0].confirmed_us - episodes[0].onset_us > 11_000_000
        assert episodes[0].movement is Movement.MOVING


@pytest.mark.parametrize(("residual_uv", "count"), [(3.6, 1), (0.0, 2)])
def test_a_dip_of_a_cramp_is_bridged_but_relaxation_is_not(residual_uv: float, count: int) -> None:
    rng = np.random.default_rng(29)
    x = synth.rest(rng, 100.0, 1000.0)
    x = synth.add_burst(rng, x, 1000.0, 20.0, 15.0, 80.0, ramp_s=0.5, taper_s=0.3)
    # 5 s between the two parts: the muscle stays at ~1.6x the floor, or relaxes fully
    x = synth.add_burst(
        rng, x, 1000.0, 34.5, 6.0, residual_uv, ramp_s=0.1, taper_s=0.1, irregular=False
    )
    x = synth.add_burst(rng, x, 1000.0, 40.0, 20.0, 80.0, ramp_s=0.3, taper_s=0.5)
    acc = synth.accelerometer(rng, 100.0, ACC_RATE)
    episodes = detect_recording(x, 1000.0, acc, ACC_RATE).episodes
    assert len(episodes) == count
    assert abs(episodes[-1].offset_us / 1e6 - 60.0) <= 1.5


def test_a_twitch_running_into_turning_over_is_not_a_cramp() -> None:
    rng = np.random.default_rng(30)
    x = synth.rest(rng, 60.0, 1000.0)
    x = synth.add_burst(rng, x, 1000.0, 20.0, 0.2, 150.0, ramp_s=0.05, taper_s=0.05)
    x = synth.add_burst(rng, x, 1000.0, 21.4, 6.0, 150.0, ramp_s=0.3, taper_s=0.5)
    still = synth.accelerometer(rng, 60.0, ACC_RATE)
    turning = synth.turn_over(rng, still, ACC_RATE, 21.5, synth.LEFT_UP)
    assert detect_recording(x, 1000.0, turning, ACC_RATE).episodes == []
    [episode] = detect_recording(x, 1000.0, still, ACC_RATE).episodes
    assert abs(episode.onset_us / 1e6 - 20.0) <= 0.5
