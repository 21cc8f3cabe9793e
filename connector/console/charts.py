"""Small charts drawn on the server as SVG: no script, no library, readable at any width."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

_WIDTH, _HEIGHT, _AXIS = 960, 170, 20


def bars(values: list[int], labels: list[str], what: str, label_every: int = 6) -> Markup:
    """A bar per value, its label and count in a tooltip; ``what`` names the unit ("events")."""
    top = max(values, default=0)
    slot = _WIDTH / max(1, len(values))
    plot = _HEIGHT - _AXIS
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="{escape(what)} per hour, at most {top}">',
        f'<line class="grid" x1="0" y1="1" x2="{_WIDTH}" y2="1"/>',
        f'<line class="axis" x1="0" y1="{plot}" x2="{_WIDTH}" y2="{plot}"/>',
    ]
    for n, (value, label) in enumerate(zip(values, labels)):
        # An empty hour keeps a sliver: all 24 slots stay visible and a zero reads as a zero, not a gap.
        height = max(1.0, plot * value / top) if top else 1.0
        x = n * slot + slot * 0.12
        parts.append(
            f'<rect class="bar{" zero" if not value else ""}" x="{x:.1f}" y="{plot - height:.1f}" '
            f'width="{slot * 0.76:.1f}" height="{height:.1f}"><title>{escape(label)}: {value} '
            f"{escape(what)}</title></rect>"
        )
        if n % label_every == 0:
            parts.append(f'<text class="tick" x="{x:.1f}" y="{_HEIGHT - 4}">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def shares(parts: list[tuple[str, int, str]]) -> Markup:
    """One bar split by ``(label, count, css class)``; an empty bar when everything is zero."""
    total = sum(count for _, count, _ in parts)
    out = [
        '<svg class="shares" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label="'
        + escape(", ".join(f"{label}: {count}" for label, count, _ in parts))
        + '">',
        '<rect class="empty" x="0" y="0" width="100" height="6"/>',
    ]
    x = 0.0
    for label, count, css in parts:
        if not count:
            continue
        width = 100 * count / total
        out.append(
            f'<rect class="{escape(css)}" x="{x:.2f}" y="0" width="{width:.2f}" height="6">'
            f"<title>{escape(label)}: {count}</title></rect>"
        )
        x += width
    out.append("</svg>")
    return Markup("".join(out))
