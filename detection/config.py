"""Detector parameters in one frozen object; the defaults are the documented rules.

Every constant here is explained, with its source, in ``docs/detection.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from detection.errors import DetectorError

EMG_RATE_RANGE_HZ = (500.0, 4000.0)
ACC_RATE_RANGE_HZ = (12.5, 200.0)
MAX_EMG_CHANNELS = 8


@dataclass(frozen=True)
class DetectorConfig:
    """Tunable rules of the cramp detector (times in s, ratios to the noise floor).

    Attributes
    ----------
    band_low_hz, band_high_hz : float
        EMG band-pass edges; the upper edge is clamped to ``band_nyquist_fraction * rate``.
    block_s : float
        Envelope grid step (the state machine runs on this grid).
    smooth_blocks : int
        Causal RMS window, in blocks (5 x 50 ms = 250 ms).
    settle_s : float
        Blocks ignored after the stream starts or resumes after a gap (filter settling).
    floor_window_s, floor_quantile : float
        Noise floor: this quantile of the 1 s envelope medians of the last window.
    floor_min_uv : float
        Lowest floor allowed, µV RMS (amplifier noise of a good sEMG front end).
    on_ratio, off_ratio, back_ratio : float
        Hysteresis: a burst starts above ``on_ratio``, continues above ``off_ratio``; onset is
        back-dated to where the envelope last sat below ``back_ratio``.
    back_factor, back_floor_ratio : float
        With a known local baseline ``b`` the onset search stops below
        ``max(back_floor_ratio, back_factor * b)`` instead of ``back_ratio``.
    backdate_max_s : float
        Onset is never back-dated further than this before the ``on_ratio`` crossing.
    baseline_s, baseline_quantile, baseline_factor : float
        A burst continues above ``max(off_ratio, baseline_factor * b)`` where ``b`` is this
        quantile of the ratio over the ``baseline_s`` before its onset.
    off_hold_s : float
        The envelope must stay below ``off_ratio`` this long to end a burst.
    merge_s : float
        A confirmed episode whose EMG rises again within this time after its offset
        continues (cramp EMG is irregular); ``ended`` waits for it.
    confirm_s : float
        A burst sustained this long after its onset is confirmed as a cramp (``started``).
    sustain_fraction : float
        Share of blocks since onset that must be above ``off_ratio`` at confirmation.
    update_every_s : float
        Period of ``updated`` events while an episode lasts.
    zcr_min_hz : float
        Minimum mean zero-crossing rate of the band-passed EMG during a burst (EMG spectrum,
        not a low-frequency artifact leaking through the band-pass).
    lm_min_s, lm_max_s, plm_min_interval_s, plm_max_interval_s : float
        Leg movement duration and periodic-limb-movement interval limits (WASM 2016).
    lm_margin_s : float
        A possible leg movement is a cramp only once it is still active this long after
        ``lm_max_s`` (onset and offset are known to a fraction of a second).
    move_pre_s, move_post_s : float
        Window around the onset in which the limb must be still.
    move_g : float
        Dynamic acceleration (smoothed magnitude, g) above which the limb moves: a burst
        starting with more is a voluntary movement.
    lm_move_g : float
        Lighter movement at onset: the burst may be a leg movement and must outlast
        ``lm_max_s`` to be a cramp.
    posture_change_deg : float
        Rotation of the gravity vector in the onset window that counts as turning over.
    upright_deg : float
        Shank within this angle of vertical counts as upright (standing or sitting up).
    upright_hold_s, got_up_window_s : float
        Upright this long within this window after an offset means the wearer got up.
    post_cramp_s, post_cramp_fraction : float
        A burst starting within ``post_cramp_s`` after a cramp's offset whose mean intensity is
        below ``post_cramp_fraction`` of that cramp's is the wearer stretching or rubbing the
        calf, not a new cramp.
    acc_wait_s : float
        How far the EMG stream may run ahead of the accelerometer before a decision is made
        without it (the accelerometer is then declared missing for that time).
    """

    band_low_hz: float = 20.0
    band_high_hz: float = 450.0
    band_nyquist_fraction: float = 0.45
    notch_q: float = 30.0
    block_s: float = 0.05
    smooth_blocks: int = 5
    settle_s: float = 0.5
    floor_window_s: float = 1200.0
    floor_quantile: float = 0.05
    floor_min_uv: float = 0.5
    on_ratio: float = 3.0
    off_ratio: float = 2.0
    back_ratio: float = 1.5
    back_factor: float = 1.2
    back_floor_ratio: float = 1.15
    backdate_max_s: float = 5.0
    baseline_s: float = 10.0
    baseline_quantile: float = 0.25
    baseline_factor: float = 1.5
    off_hold_s: float = 1.5
    merge_s: float = 10.0
    confirm_s: float = 4.0
    sustain_fraction: float = 0.8
    update_every_s: float = 5.0
    zcr_min_hz: float = 60.0
    lm_min_s: float = 0.5
    lm_max_s: float = 10.0
    lm_margin_s: float = 1.0
    plm_min_interval_s: float = 5.0
    plm_max_interval_s: float = 90.0
    move_pre_s: float = 1.0
    move_post_s: float = 1.0
    move_g: float = 0.1
    lm_move_g: float = 0.03
    posture_change_deg: float = 30.0
    upright_deg: float = 35.0
    upright_hold_s: float = 3.0
    got_up_window_s: float = 60.0
    post_cramp_s: float = 60.0
    post_cramp_fraction: float = 1.0
    acc_wait_s: float = 5.0
    flat_uv: float = 0.1
    clip_fraction: float = 0.05
    rail_fraction: float = 0.5
    mains_fraction: float = 0.5
    artifact_ratio: float = 8.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not value > 0:
                raise DetectorError(f"DetectorConfig.{item.name} must be > 0, got {value!r}")
        if not self.off_ratio <= self.on_ratio:
            raise DetectorError("DetectorConfig.off_ratio must not exceed on_ratio")
        if not self.back_ratio <= self.off_ratio:
            raise DetectorError("DetectorConfig.back_ratio must not exceed off_ratio")
        if not 0 < self.floor_quantile < 1 or not 0 < self.sustain_fraction <= 1:
            raise DetectorError("DetectorConfig quantile/fraction values must be in (0, 1]")
