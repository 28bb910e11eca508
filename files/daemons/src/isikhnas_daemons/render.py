"""Report rendering: CSV, and a bar chart as hand-written SVG (no plotting dependency)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Row:
    disease: str
    disease_name: str
    reports: int
    sick: int
    dead: int
    vaccinated: int
    centroid_lat: float | None
    centroid_lon: float | None
    hull_area_km2: float | None


def to_csv(rows: Sequence[Row]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([f.name for f in fields(Row)])
    for row in rows:
        writer.writerow(["" if v is None else (f"{v:.6f}" if isinstance(v, float) else v) for v in astuple(row)])
    return out.getvalue().encode("utf-8")


_SERIES = (("sick", "#e69f00"), ("dead", "#d55e00"), ("vaccinated", "#0072b2"))


def bar_chart(rows: Sequence[Row], title: str) -> bytes:
    """Grouped horizontal bars (sick, dead, vaccinated) per disease, scaled to the largest value."""
    label_width, bar_area, bar_height, gap, top = 150, 460, 12, 14, 60
    group = bar_height * len(_SERIES) + gap
    height = top + max(1, len(rows)) * group + 30
    width = label_width + bar_area + 90
    peak = max((getattr(r, name) for r in rows for name, _ in _SERIES), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="22" font-size="16" font-weight="bold">{escape(title)}</text>',
    ]
    for index, (name, colour) in enumerate(_SERIES):
        x = label_width + index * 110
        parts.append(f'<rect x="{x}" y="34" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="45">{name}</text>')
    if not rows:
        parts.append(f'<text x="{label_width}" y="{top + 20}">No reports in this period.</text>')
    for row_index, row in enumerate(rows):
        y0 = top + row_index * group
        parts.append(f'<text x="{label_width - 8}" y="{y0 + group / 2}" text-anchor="end">{escape(row.disease)}</text>')
        for series_index, (name, colour) in enumerate(_SERIES):
            value = int(getattr(row, name))
            length = round(bar_area * value / peak, 1)
            y = y0 + series_index * bar_height
            parts.append(
                f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar_height - 2}" fill="{colour}">'
                f"<title>{escape(row.disease)} {name}: {value}</title></rect>"
            )
            parts.append(f'<text x="{label_width + length + 4}" y="{y + bar_height - 3}" font-size="10">{value}</text>')
    parts.append("</svg>")
    return ("\n".join(parts) + "\n").encode("utf-8")
