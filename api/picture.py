"""A picture of a night: EMG envelope against the noise floor, episodes shaded, movement and
posture strip, gaps and faults marked (matplotlib, Agg, no pyplot state)."""

from __future__ import annotations

import io
import itertools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg", force=False)  # select the backend only; no figure is made here

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from detection.events import Episode, QualityEvent, SeriesPoint
from storage.localtime import from_us

ImageFormat = Literal["png", "svg"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}
WIDTH_RANGE_PX = (200, 4000)
HEIGHT_RANGE_PX = (150, 3000)
_DPI = 100
_POSTURE_COLOURS = {
    "supine": "#9ecae1",
    "prone": "#6baed6",
    "left": "#a1d99b",
    "right": "#74c476",
    "upright": "#fd8d3c",
}
_FAULT_COLOUR = "#d62728"
_GAP_COLOUR = "#bdbdbd"
RENDER_LOCK = threading.Lock()  # matplotlib's text/font caches are not thread-safe


@dataclass(frozen=True)
class DeviceNight:
    """What one device recorded in the night window."""

    device_id: str
    site: str
    series: Sequence[SeriesPoint]
    episodes: Sequence[Episode]
    quality: Sequence[QualityEvent]


def render_night(
    devices: Sequence[DeviceNight],
    start_us: int,
    end_us: int,
    time_zone: str,
    *,
    width_px: int,
    height_px: int,
    fmt: ImageFormat = "png",
    title: str = "",
) -> bytes:
    """PNG or SVG bytes of the night, exactly ``width_px`` × ``height_px``.

    Parameters
    ----------
    devices : sequence of DeviceNight
        One envelope panel and one movement strip per device.
    start_us, end_us : int
        The window shown, µs since the epoch (UTC).
    time_zone : str
        IANA zone for the time axis.
    """
    zone = ZoneInfo(time_zone)
    with RENDER_LOCK:
        fig = new_figure(width_px, height_px, fmt)
        rows = max(1, len(devices))
        grid = fig.add_gridspec(2 * rows, 1, height_ratios=[4, 1] * rows, hspace=0.15)
        view_start_us, view_end_us = _view_us(devices, start_us, end_us)
        x_start, x_end = _local(view_start_us, zone), _local(view_end_us, zone)
        if not devices:
            ax = fig.add_subplot(grid[0:2, 0])
            ax.text(0.5, 0.5, "no devices", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        for row, night in enumerate(devices):
            env_ax = fig.add_subplot(grid[2 * row, 0])
            strip_ax = fig.add_subplot(grid[2 * row + 1, 0], sharex=env_ax)
            _draw_envelope(env_ax, night, zone)
            _draw_strip(strip_ax, night, zone)
            for ax in (env_ax, strip_ax):
                ax.set_xlim(x_start, x_end)
                _mark_gaps_and_faults(ax, night, start_us, end_us, zone)
            env_ax.tick_params(labelbottom=False)
            _envelope_legend(env_ax, night, start_us, end_us)
            _posture_legend(strip_ax, night)
            strip_ax.xaxis.set_major_locator(
                mdates.AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
            )
            strip_ax.xaxis.set_major_formatter(
                mdates.DateFormatter("%H:%M", tz=zone)  # type: ignore[no-untyped-call]
            )
        if title:
            fig.suptitle(title, fontsize="medium")
        return figure_bytes(fig, fmt, width_px, height_px)


def new_figure(width_px: int, height_px: int, fmt: ImageFormat) -> Figure:
    """A pyplot-free figure that renders at exactly ``width_px`` × ``height_px``."""
    # SVG is written in points (72 per inch): size it so its user units are pixels.
    dpi = 72 if fmt == "svg" else _DPI
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_bytes(fig: Figure, fmt: ImageFormat, width_px: int, height_px: int) -> bytes:
    """PNG or SVG bytes of a figure made by :func:`new_figure`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=72 if fmt == "svg" else _DPI, metadata=_metadata(fmt))
    data = buffer.getvalue()
    if fmt == "svg":
        text = data.decode()
        text = re.sub(r'width="[0-9.]+pt"', f'width="{width_px}px"', text, count=1)
        text = re.sub(r'height="[0-9.]+pt"', f'height="{height_px}px"', text, count=1)
        data = text.encode()
    return data


def _metadata(fmt: ImageFormat) -> dict[str, str | None]:
    # No creation date: the same night gives the same bytes.
    return {"Date": None} if fmt == "svg" else {"Software": "CrampWatch"}


def _local(ts_us: int, zone: ZoneInfo) -> float:
    """Matplotlib date number of a device time (the axis formatter shows it in ``zone``)."""
    return float(mdates.date2num(from_us(ts_us).astimezone(zone)))  # type: ignore[no-untyped-call]


def _draw_envelope(ax: Axes, night: DeviceNight, zone: ZoneInfo) -> None:
    points = _with_breaks(night.series)
    times = np.array([_local(p.ts_us, zone) for p in points])
    envelope = np.array([np.nan if p.envelope_uv is None else p.envelope_uv for p in points])
    floor = np.array([np.nan if p.floor_uv is None else p.floor_uv for p in points])
    if times.size:
        ax.plot(times, envelope, color="#1f77b4", linewidth=0.7, label="EMG envelope")
        ax.plot(times, floor, color="#7f7f7f", linewidth=1.0, linestyle="--", label="noise floor")
    if np.isfinite(envelope).any() and np.nanmin(envelope) > 0:
        ax.set_yscale("log")
    for episode in night.episodes:
        end_us = episode.offset_us or episode.onset_us + int(episode.duration_s * 1e6)
        ax.axvspan(
            _local(episode.onset_us, zone),
            _local(end_us, zone),
            color="#ff7f0e",
            alpha=0.35,
            linewidth=0,
            label="cramp",
        )
    ax.set_ylabel("µV")
    ax.set_title(f"{night.device_id} ({night.site})", fontsize="small", loc="left")


def _draw_strip(ax: Axes, night: DeviceNight, zone: ZoneInfo) -> None:
    points = _with_breaks(night.series)
    activity = np.array([np.nan if p.activity_g is None else p.activity_g for p in points])
    times = np.array([_local(p.ts_us, zone) for p in points])
    top = float(np.nanmax(activity)) if np.isfinite(activity).any() else 1.0
    top = max(top, 0.05)
    for posture, run_start_us, run_end_us in _posture_runs(points):
        colour = _POSTURE_COLOURS.get(posture)
        if colour is not None:
            ax.axvspan(
                _local(run_start_us, zone), _local(run_end_us, zone), color=colour, linewidth=0
            )
    if times.size:
        ax.plot(times, activity, color="black", linewidth=0.6)
    ax.set_ylim(0, top * 1.1)
    ax.set_ylabel("g", fontsize="x-small")
    ax.tick_params(labelsize="x-small")


def _mark_gaps_and_faults(
    ax: Axes, night: DeviceNight, start_us: int, end_us: int, zone: ZoneInfo
) -> None:
    for gap_start_us, gap_end_us in data_gaps_us(night.series, start_us, end_us):
        ax.axvspan(
            _local(gap_start_us, zone),
            _local(gap_end_us, zone),
            color=_GAP_COLOUR,
            alpha=0.35,
            hatch="//",
            linewidth=0,
        )
    for fault in night.quality:
        fault_end = end_us if fault.end_us is None else min(fault.end_us, end_us)
        colour = _GAP_COLOUR if fault.flag == "gap" else _FAULT_COLOUR
        ax.axvspan(
            _local(max(fault.start_us, start_us), zone),
            _local(fault_end, zone),
            ymin=0.0 if fault.flag == "gap" else 0.94,
            ymax=1.0,
            color=colour,
            alpha=0.5 if fault.flag == "gap" else 0.9,
            hatch="//" if fault.flag == "gap" else None,
            linewidth=0,
        )


def data_gaps_us(
    series: Sequence[SeriesPoint], start_us: int, end_us: int, min_gap_s: float = 60.0
) -> list[tuple[int, int]]:
    """Intervals of the window with no 1 Hz point for at least ``min_gap_s`` seconds.

    Before the first and after the last point count only when some data exists at all.
    """
    if not series:
        return []
    min_gap_us = max(int(min_gap_s * 1e6), 3 * _median_step_us(series))
    gaps = []
    edges = [start_us, *(p.ts_us for p in series), end_us]
    for before, after in itertools.pairwise(edges):
        if after - before > min_gap_us:
            gaps.append((before, after))
    return gaps


def _with_breaks(series: Sequence[SeriesPoint], max_step_s: float = 90.0) -> list[SeriesPoint]:
    """Insert an empty point into every hole longer than ``max_step_s`` so lines break there."""
    max_step_us = max(max_step_s * 1e6, 3 * _median_step_us(series))
    out: list[SeriesPoint] = []
    for point in series:
        if out and point.ts_us - out[-1].ts_us > max_step_us:
            out.append(SeriesPoint(out[-1].ts_us + 1_000_000, None, None, None, None))
        out.append(point)
    return out


def _median_step_us(series: Sequence[SeriesPoint]) -> int:
    if len(series) < 2:
        return 1_000_000
    return int(np.median(np.diff([p.ts_us for p in series])))


def _posture_runs(points: Sequence[SeriesPoint]) -> list[tuple[str, int, int]]:
    """(posture, start_us, end_us) of consecutive points with the same posture."""
    runs: list[tuple[str, int, int]] = []
    for i, point in enumerate(points):
        end_us = points[i + 1].ts_us if i + 1 < len(points) else point.ts_us + 1_000_000
        posture = point.posture or ""
        if runs and runs[-1][0] == posture and runs[-1][2] == point.ts_us:
            runs[-1] = (posture, runs[-1][1], end_us)
        else:
            runs.append((posture, point.ts_us, end_us))
    return runs


_VIEW_MARGIN_US = 30 * 60 * 1_000_000


def _view_us(devices: Sequence[DeviceNight], start_us: int, end_us: int) -> tuple[int, int]:
    """The part of the window with data, plus 30 min each side (the whole window if none)."""
    times = [p.ts_us for d in devices for p in d.series]
    times += [e.onset_us for d in devices for e in d.episodes]
    times += [e.offset_us for d in devices for e in d.episodes if e.offset_us is not None]
    if not times:
        return start_us, end_us
    return (
        max(start_us, min(times) - _VIEW_MARGIN_US),
        min(end_us, max(times) + _VIEW_MARGIN_US),
    )


def _posture_legend(ax: Axes, night: DeviceNight) -> None:
    from matplotlib.patches import Patch

    seen = {p.posture for p in night.series if p.posture in _POSTURE_COLOURS}
    handles = [Patch(color=_POSTURE_COLOURS[name], label=name) for name in sorted(seen)]
    if handles:
        ax.legend(
            handles=handles,
            fontsize="xx-small",
            loc="upper right",
            ncol=len(handles),
            framealpha=0.7,
        )


def _envelope_legend(ax: Axes, night: DeviceNight, start_us: int, end_us: int) -> None:
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if any(f.flag != "gap" for f in night.quality):
        unique["signal fault"] = Patch(color=_FAULT_COLOUR, alpha=0.9)
    if any(f.flag == "gap" for f in night.quality) or data_gaps_us(night.series, start_us, end_us):
        unique["no data"] = Patch(facecolor=_GAP_COLOUR, alpha=0.5, hatch="//")
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize="x-small", loc="upper right")
