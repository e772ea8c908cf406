"""Per-epoch curves as small inline SVG line charts (no plotting library, byte-stable output)."""
from __future__ import annotations

import math
from html import escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0) * 0.1
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _f(x: float) -> str:
    return f"{x:.1f}"


def _label(v: float) -> str:
    return f"{v:g}"


def line_chart(series: list[tuple[str, list[float], list[float]]], title: str, xlabel: str, ylabel: str,
               width: int = 420, height: int = 230) -> str:
    """``series``: (name, xs, ys) per line. Returns an ``<svg>`` element with axes, ticks, lines and a legend."""
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    left, right, top, bottom = 52, 12, 26, 52
    w, h = width - left - right, height - top - bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}" role="img" aria-label="{escape(title)}">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="12" font-weight="600">'
           f'{escape(title)}</text>']
    if not pts:
        out += [f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" font-size="12" '
                'fill="#777">no data</text>', "</svg>"]
        return "\n".join(out)
    xt = nice_ticks(min(p[0] for p in pts), max(p[0] for p in pts), 6)
    yt = nice_ticks(min(p[1] for p in pts), max(p[1] for p in pts), 5)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def sx(x):
        return left + (x - x0) / ((x1 - x0) or 1) * w

    def sy(y):
        return top + h - (y - y0) / ((y1 - y0) or 1) * h

    g = ['<g font-size="10" fill="#444">']
    for t in yt:
        g.append(f'<line x1="{left}" x2="{left + w}" y1="{_f(sy(t))}" y2="{_f(sy(t))}" stroke="#e5e7eb"/>'
                 f'<text x="{left - 4}" y="{_f(sy(t) + 3)}" text-anchor="end">{_label(t)}</text>')
    for t in xt:
        g.append(f'<line x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{top + h}" y2="{top + h + 4}" stroke="#888"/>'
                 f'<text x="{_f(sx(t))}" y="{top + h + 15}" text-anchor="middle">{_label(t)}</text>')
    g.append(f'<line x1="{left}" x2="{left + w}" y1="{top + h}" y2="{top + h}" stroke="#888"/>'
             f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + h}" stroke="#888"/>')
    g.append(f'<text x="{left + w / 2:.1f}" y="{top + h + 28}" text-anchor="middle">{escape(xlabel)}</text>'
             f'<text transform="translate(12 {top + h / 2:.1f}) rotate(-90)" text-anchor="middle">'
             f'{escape(ylabel)}</text></g>')
    out += g
    for k, (name, xs, ys) in enumerate(series):
        c = COLORS[k % len(COLORS)]
        p = " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in zip(xs, ys) if y is not None and math.isfinite(y))
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{p}"><title>{escape(name)}'
                   "</title></polyline>")
        if len(xs) == 1:
            out.append(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" fill="{c}"/>')
        lx, ly = left + 76 * k, height - 6  # legend: one row under the axis label
        out.append(f'<line x1="{lx}" x2="{lx + 14}" y1="{ly - 3}" y2="{ly - 3}" stroke="{c}" stroke-width="2"/>'
                   f'<text x="{lx + 18}" y="{ly}" font-size="10">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
