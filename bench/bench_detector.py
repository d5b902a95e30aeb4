"""Offline detector speed: one 8 h night (1 kHz EMG + 50 Hz ACC) through ``detect_recording``.

Against the floor (one ``scipy.signal.sosfilt`` band-pass pass over the same EMG, timed in
turn with ours: the ratio is the median of the pairs' ratios), the same filter run in the
detector's 60 s pieces (its arithmetic without the page faults of one fresh 8 h array), and the
anchors NeuroKit2 and BioSPPy. The anchors run on an excerpt of the same night (NeuroKit2
needs minutes per night-hour); their speed is a real-time factor, so the ratio stands.

    python -m bench.bench_detector [--quick] [--runs 5]
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from scipy import signal

from bench.common import median, parser, table, timed_runs, write_result

NAME = "detector"


def simulated_night(seed: int, duration_s: float) -> Any:
    """A ``typical`` night: 1 kHz EMG, 50 Hz ACC, float64."""
    from simulator.night import simulate_night

    rng = np.random.default_rng(seed)
    return simulate_night(
        rng, "typical", duration_s=duration_s, emg_rate_hz=1000.0, acc_rate_hz=50.0
    ).recording


def run(quick: bool, runs: int, seed: int, anchor_s: float | None = None) -> dict[str, Any]:
    """Time ours, the floor and the anchors; return the figures."""
    from detection.anchors import AnchorUnavailable, EpisodeRule, anchor_episodes
    from detection.offline import CHUNK_S, detect_recording

    duration_s = 600.0 if quick else 8 * 3600.0
    anchor_s = anchor_s or (60.0 if quick else 300.0)
    rec = simulated_night(seed, duration_s)
    emg = np.ascontiguousarray(rec.emg_uv, dtype=np.float64)
    acc = np.ascontiguousarray(rec.acc_g, dtype=np.float64)
    signal_s = emg.shape[0] / rec.emg_rate_hz

    sos = signal.butter(4, [20.0, 450.0], btype="bandpass", fs=rec.emg_rate_hz, output="sos")
    # ours and the floor alternate, so that both see the same share of whatever else the
    # machine is doing; the ratio is the median of the ratios of these pairs
    ours_s: list[float] = []
    floor_s: list[float] = []
    pieces_s: list[float] = []
    result: Any = None
    piece = round(CHUNK_S * rec.emg_rate_hz)
    for _ in range(max(1, runs)):
        seconds, result = timed_runs(
            lambda: detect_recording(emg, rec.emg_rate_hz, acc, rec.acc_rate_hz), 1
        )
        ours_s += seconds
        floor_s += timed_runs(lambda: signal.sosfilt(sos, emg[:, 0]), 1)[0]
        pieces_s += timed_runs(lambda: sosfilt_in_pieces(sos, emg[:, 0], piece), 1)[0]
    figures: dict[str, Any] = {
        "signal_s": signal_s,
        "runs": runs,
        "ours": {
            "seconds": ours_s,
            "median_s": median(ours_s),
            "realtime_x": signal_s / median(ours_s),
            "episodes": len(result.episodes),
        },
        "floor": {
            "seconds": floor_s,
            "median_s": median(floor_s),
            "realtime_x": signal_s / median(floor_s),
        },
        "ours_over_floor": median([o / f for o, f in zip(ours_s, floor_s, strict=True)]),
        "ours_over_floor_medians": median(ours_s) / median(floor_s),
        # the same filter in the detector's 60 s pieces, state carried: its arithmetic alone,
        # without the page faults of writing one fresh 8 h array (which make the one-pass
        # floor vary by 2x between runs)
        "floor_in_pieces": {
            "seconds": pieces_s,
            "median_s": median(pieces_s),
            "realtime_x": signal_s / median(pieces_s),
        },
        "ours_over_floor_in_pieces": median([o / f for o, f in zip(ours_s, pieces_s, strict=True)]),
        "anchors": {},
    }
    excerpt = emg[: int(anchor_s * rec.emg_rate_hz)]
    rule = EpisodeRule()
    for anchor in ("neurokit2", "biosppy"):
        try:
            a_s, _ = timed_runs(
                lambda anchor=anchor: anchor_episodes(anchor, excerpt, rec.emg_rate_hz, rule),
                runs,
            )
        except AnchorUnavailable as exc:
            figures["anchors"][anchor] = {"unavailable": str(exc)}
            continue
        realtime = anchor_s / median(a_s)
        figures["anchors"][anchor] = {
            "signal_s": anchor_s,
            "seconds": a_s,
            "median_s": median(a_s),
            "realtime_x": realtime,
            "anchor_over_ours": figures["ours"]["realtime_x"] / realtime,
        }
    return figures


def sosfilt_in_pieces(sos: Any, x: Any, piece: int) -> Any:
    """``signal.sosfilt(sos, x)`` computed ``piece`` samples at a time with the filter state
    carried (the same values; the output of each piece is dropped, as a stream would)."""
    zi = np.zeros((sos.shape[0], 2))
    y = None
    for lo in range(0, x.shape[0], piece):
        y, zi = signal.sosfilt(sos, x[lo : lo + piece], zi=zi)
    return y


def render(f: dict[str, Any]) -> str:
    rows = [
        (
            "crampwatch detect_recording",
            f"{f['signal_s'] / 3600:.2f} h",
            f"{f['ours']['median_s']:.3f}",
            f"{f['ours']['realtime_x']:,.0f}x",
            f"{f['ours_over_floor']:.2f}x floor",
        ),
        (
            "floor: sosfilt band-pass",
            f"{f['signal_s'] / 3600:.2f} h",
            f"{f['floor']['median_s']:.3f}",
            f"{f['floor']['realtime_x']:,.0f}x",
            "1.00x floor",
        ),
        (
            "floor: the same in 60 s pieces",
            f"{f['signal_s'] / 3600:.2f} h",
            f"{f['floor_in_pieces']['median_s']:.3f}",
            f"{f['floor_in_pieces']['realtime_x']:,.0f}x",
            f"ours is {f['ours_over_floor_in_pieces']:.2f}x this",
        ),
    ]
    for name, a in f["anchors"].items():
        if "unavailable" in a:
            rows.append((name, "-", "-", "-", a["unavailable"]))
            continue
        rows.append(
            (
                name,
                f"{a['signal_s'] / 60:.0f} min excerpt",
                f"{a['median_s']:.3f}",
                f"{a['realtime_x']:,.0f}x",
                f"ours is {a['anchor_over_ours']:,.0f}x faster",
            )
        )
    return table(rows, ("detector", "signal", "median s", "real time", "ratio"))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--anchor-s", type=float, default=None, help="Anchor excerpt length, s.")
    args = p.parse_args(argv)
    figures = run(args.quick, args.runs, args.seed, args.anchor_s)
    print(render(figures))
    print(f"wrote {write_result(args.out, NAME, figures, quick=args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
