"""The per-patient HTML page: weekly chart, red flags, latest nights (server-rendered)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

from api.models import RedFlagPublic
from api.picture import RENDER_LOCK, figure_bytes, new_figure
from api.summaries import Trend
from storage.base import NightSummary, WeekSummary
from storage.metadata import WearerRecord

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd}
th{text-align:left}.flag{color:#b30000}.muted{color:#777}
"""


def weekly_chart_svg(
    weeks: Sequence[WeekSummary], width_px: int = 800, height_px: int = 260
) -> str:
    """SVG bar chart of episodes and cramp nights per week."""
    with RENDER_LOCK:
        fig = new_figure(width_px, height_px, "svg")
        ax = fig.add_subplot()
        x = np.arange(len(weeks))
        ax.bar(x - 0.2, [w.episodes for w in weeks], width=0.4, label="episodes", color="#ff7f0e")
        ax.bar(x + 0.2, [w.cramp_nights for w in weeks], width=0.4, label="cramp nights")
        ax.set_xticks(x, [w.week[-3:] for w in weeks], fontsize="x-small")
        ax.legend(fontsize="x-small")
        data = figure_bytes(fig, "svg", width_px, height_px).decode()
    return data[data.index("<svg") :]


def patient_page(
    wearer: WearerRecord,
    weeks: Sequence[WeekSummary],
    trend: Trend,
    flags: Sequence[RedFlagPublic],
    nights: Sequence[NightSummary],
    night_svg: str | None,
) -> str:
    """The whole HTML document (every value escaped)."""
    flag_items = "".join(
        f'<li class="flag">{escape(f.device_id)}: {escape(f.message)}</li>' for f in flags
    ) or ('<li class="muted">none</li>')
    rows = "".join(
        "<tr>"
        f"<td>{escape(n.night)}</td><td>{escape(n.device_id)}</td><td>{n.episodes}</td>"
        f"<td>{n.total_cramp_s / 60:.1f}</td><td>{n.longest_cramp_s / 60:.1f}</td>"
        f"<td>{'yes' if n.got_up else 'no'}</td><td>{n.data_coverage:.0%}</td>"
        f"<td>{escape(', '.join(n.quality_flags))}</td></tr>"
        for n in nights
    )
    picture = night_svg[night_svg.index("<svg") :] if night_svg else "<p class=muted>no data</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>CrampWatch: {escape(wearer.name)}</title><style>{_STYLE}</style></head>
<body>
<h1>{escape(wearer.name)} <span class="muted">({escape(wearer.wearer_id)})</span></h1>
<p class="muted">Times in {escape(wearer.time_zone)}. Trend: {escape(trend.direction)}
({trend.slope_episodes_per_week:+.2f} episodes/week per week over {trend.weeks} weeks).</p>
<h2>Red flags</h2><ul>{flag_items}</ul>
<h2>Weekly</h2>{weekly_chart_svg(weeks)}
<h2>Latest nights</h2>
<table><tr><th>Night</th><th>Device</th><th>Cramps</th><th>Total min</th><th>Longest min</th>
<th>Got up</th><th>Data</th><th>Quality</th></tr>{rows}</table>
<h2>Latest night</h2>{picture}
</body></html>
"""
