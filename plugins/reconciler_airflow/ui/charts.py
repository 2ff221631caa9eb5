"""An inline SVG chart of drift magnitude over a target's last cycles (no JavaScript, no CDN)."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["drift_chart"]

STATUS_COLOUR = {"converged": "#2e7d32", "in_sync": "#2e7d32", "failed": "#c62828",
                 "no_progress": "#c62828", "deadline": "#c62828", "max_iterations": "#c62828",
                 "invalid_input": "#c62828", "breaker_open": "#6a1b9a",
                 "needs_approval": "#ef6c00"}
DEFAULT_COLOUR = "#546e7a"


Point = tuple[float, float]


def _points(values: list[float], width: int, height: int, pad: int, top: float) -> list[Point]:
    step = (width - 2 * pad) / max(1, len(values) - 1)
    return [(pad + i * step, height - pad - (v / top) * (height - 2 * pad))
            for i, v in enumerate(values)]


def _polyline(points: list[Point], colour: str, dash: str = "") -> str:
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    style = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<polyline fill="none" stroke="{colour}" stroke-width="2"{style} '
            f'points="{coords}"/>')


def drift_chart(history: list[dict[str, Any]], width: int = 560, height: int = 160) -> str:
    """Drift found (solid) and left (dashed) per cycle, oldest left; dots coloured by status."""
    if not history:
        return '<p class="muted">No cycles recorded yet.</p>'
    pad = 28
    found = [float(c["initial_magnitude"]) for c in history]
    left = [float(c["final_magnitude"]) for c in history]
    top = max([*found, *left, 1.0])
    found_pts = _points(found, width, height, pad, top)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" aria-label="drift magnitude over the last {len(history)} '
             f'cycles">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
             f'stroke="#b0bec5"/>',
             f'<text x="4" y="{pad - 8}" font-size="11" fill="#546e7a">{top:g}</text>',
             f'<text x="4" y="{height - pad + 4}" font-size="11" fill="#546e7a">0</text>',
             _polyline(found_pts, "#1565c0"),
             _polyline(_points(left, width, height, pad, top), "#90a4ae", "4 3")]
    for (x, y), cycle in zip(found_pts, history, strict=True):
        colour = STATUS_COLOUR.get(cycle["status"], DEFAULT_COLOUR)
        tip = escape(f"{cycle['started_at']}: {cycle['status']}, drift "
                     f"{cycle['initial_magnitude']:g} -> {cycle['final_magnitude']:g}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                     f'<title>{tip}</title></circle>')
    parts.append(f'<text x="{pad}" y="{height - 8}" font-size="11" fill="#546e7a">'
                 f'oldest</text><text x="{width - pad}" y="{height - 8}" font-size="11" '
                 f'text-anchor="end" fill="#546e7a">newest</text></svg>')
    return "".join(parts)
