"""A unit's trend on the ledger page as a small SVG, drawn on the server: its 迟报, 漏报 and 内容不全 per
bucket (hour or day, Asia/Shanghai) as stacked bars. No script and no CDN: the page shows it as it
comes, and the same figures are the JSON's (UnitLine.trend)."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from playbooks.ledger.rules import UnitLine

BEIJING = ZoneInfo("Asia/Shanghai")
WIDTH, HEIGHT, PAD, AXIS = 360, 110, 4, 16
# the outcome, its label and its colour (the board's: overdue red, late amber)
SERIES = (("missed", "漏报", "#c0392b"), ("late", "迟报", "#e67e22"), ("incomplete", "内容不全", "#8e7cc3"))


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    fill: str
    title: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: bars, the axis's first and last labels, the largest count."""

    width: int
    height: int
    bars: list[Bar]
    first: str
    last: str
    peak: int
    label: str  # the chart's accessible name


def trend_chart(line: UnitLine, bucket: str) -> Chart:
    points = line.trend
    n = max(len(points), 1)
    peak = max((p.late + p.missed + p.incomplete for p in points), default=0)
    scale = (HEIGHT - AXIS - PAD) / max(peak, 1)
    slot = (WIDTH - 2 * PAD) / n
    bars: list[Bar] = []
    fmt = "%H时" if bucket == "hour" else "%m-%d"
    for i, p in enumerate(points):
        base = HEIGHT - AXIS
        when = p.start.astimezone(BEIJING).strftime("%m-%d %H:%M" if bucket == "hour" else "%Y-%m-%d")
        for key, label, colour in SERIES:
            count = getattr(p, key)
            if not count:
                continue
            h = count * scale
            base -= h
            bars.append(Bar(x=round(PAD + i * slot + slot * 0.1, 1), y=round(base, 1), w=round(slot * 0.8, 1),
                            h=round(h, 1), fill=colour, title=f"{when} {label} {count}"))
    first = points[0].start.astimezone(BEIJING).strftime(fmt) if points else ""
    last = points[-1].start.astimezone(BEIJING).strftime(fmt) if points else ""
    return Chart(width=WIDTH, height=HEIGHT, bars=bars, first=first, last=last, peak=peak,
                 label=f"{line.unit} 迟报、漏报、内容不全趋势（每{'小时' if bucket == 'hour' else '日'}）")
