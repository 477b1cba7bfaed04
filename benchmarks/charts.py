"""Small inline-SVG charts for the benchmark report: line charts, grouped and stacked bars.

Each chart function returns one complete ``<svg>`` element as a string: valid
XML, no scripts, no external references (fonts fall back to the browser's
sans-serif).  The same string can be embedded in HTML or written to a
``.svg`` file.  Points carry a ``<title>`` so browsers show their values on
hover without any JavaScript.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

#: Colours for series without an explicit one (colour-blind friendly, Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#F0E442")

_CHAR_WIDTH = 7.0  # rough width of a 12px sans-serif character
_FONT = 12


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``low..high`` (1, 2, 2.5 or 5 x 10^k)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("tick bounds must be finite")
    if high < low:
        low, high = high, low
    if high == low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten from ``low`` to ``high`` (both positive)."""
    if low <= 0 or high <= 0:
        raise ValueError("log ticks need positive bounds")
    first = math.floor(math.log10(low) + 1e-9)
    last = math.ceil(math.log10(high) - 1e-9)
    return [10.0 ** k for k in range(first, last + 1)]


def format_tick(value: float) -> str:
    """A short tick label: ``0.5``, ``12``, ``2.5k``, ``1M``."""
    magnitude = abs(value)
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:g}{suffix}"
    if magnitude and magnitude < 0.01:
        return f"{value:.0e}"
    return f"{round(value, 4):g}"


class Scale:
    """Maps data values onto pixels, linearly or logarithmically."""

    def __init__(self, low: float, high: float, start: float, end: float,
                 log: bool = False) -> None:
        if log and (low <= 0 or high <= 0):
            raise ValueError("a log scale needs positive bounds")
        self.low, self.high, self.start, self.end, self.log = low, high, start, end, log

    def _t(self, value: float) -> float:
        if self.log:
            return math.log10(value)
        return value

    def __call__(self, value: float) -> float:
        low, high = self._t(self.low), self._t(self.high)
        if high == low:
            return (self.start + self.end) / 2
        return self.start + (self._t(value) - low) / (high - low) * (self.end - self.start)

    def ticks(self) -> list[float]:
        """Tick values inside the scale's domain."""
        if self.log:
            return log_ticks(self.low, self.high)
        return nice_ticks(self.low, self.high)


def _domain(values: Sequence[float], *, from_zero: bool, log: bool) -> tuple[float, float]:
    """Bounds that include every value, padded to round ticks."""
    if log:
        positive = [v for v in values if v > 0]
        if not positive:
            return 1.0, 10.0
        low = 10.0 ** math.floor(math.log10(min(positive)) + 1e-9)
        high = 10.0 ** math.ceil(math.log10(max(positive)) - 1e-9)
        return (low, high) if high > low else (low, low * 10)
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if from_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        pad = abs(high) * 0.5 or 1.0
        low, high = (low - pad, high + pad) if not from_zero or low < 0 else (0.0, high + pad)
    ticks = nice_ticks(low, high)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    if ticks[0] > low:
        low = ticks[0] - step
    else:
        low = ticks[0]
    if ticks[-1] < high:
        high = ticks[-1] + step
    else:
        high = ticks[-1]
    return low, high


def _text(x: float, y: float, content: str, **attributes: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attributes.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(content)}</text>'


def _legend(names: Sequence[str], colors: Mapping[str, str], empty: set[str], left: float,
            top: float, width: float) -> tuple[list[str], float]:
    """Legend items laid out in rows; returns the elements and the height used."""
    parts: list[str] = []
    x, y = left, top
    row_height = _FONT + 6
    for name in names:
        label = f"{name} (not measured)" if name in empty else name
        item_width = 18 + len(label) * _CHAR_WIDTH + 16
        if x + item_width > left + width and x > left:
            x, y = left, y + row_height
        color = colors[name]
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="12" '
                     f'fill="{color}" fill-opacity="{0.25 if name in empty else 1}"/>')
        parts.append(_text(x + 17, y + 1, label, fill="#333"))
        x += item_width
    return parts, (y - top) + row_height if names else 0.0


def _colors(names: Sequence[str], given: Mapping[str, str] | None) -> dict[str, str]:
    given = given or {}
    spare = iter(c for c in PALETTE if c not in given.values())
    result = {}
    for index, name in enumerate(names):
        result[name] = given.get(name) or next(spare, PALETTE[index % len(PALETTE)])
    return result


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)} '
        f'font-family="sans-serif" font-size="{_FONT}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        _text(width / 2, 20, title, text_anchor="middle", font_size="14", font_weight="bold"),
        *body,
        "</svg>",
    ])


def _y_axis(scale: Scale, left: float, right: float, y_label: str, top: float,
            bottom: float) -> list[str]:
    parts = []
    for tick in scale.ticks():
        y = scale(tick)
        parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                     'stroke="#e5e5e5"/>')
        parts.append(_text(left - 6, y + 4, format_tick(tick), text_anchor="end", fill="#333"))
    parts.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{bottom:.1f}" '
                 'stroke="#333"/>')
    middle = (top + bottom) / 2
    parts.append(_text(16, middle, y_label, text_anchor="middle", fill="#333",
                       transform=f"rotate(-90 16 {middle:.1f})"))
    return parts


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float | None]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    colors: Mapping[str, str] | None = None,
    width: int = 640,
    height: int = 380,
    log_y: bool = False,
    intervals: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
    reference: tuple[float, str] | None = None,
    from_zero: bool = True,
) -> str:
    """A line chart with one line and markers per named series of ``(x, y)`` points.

    Points whose y is None are left out; a series without points is listed in
    the legend as "not measured".  The y axis starts at zero unless ``log_y``
    or not ``from_zero``.  ``intervals[name]`` holds ``(x, low, high)``
    whiskers drawn at the series' points; ``reference`` is ``(y, label)`` of a
    dashed horizontal line (a ratio of 1, say).
    """
    names = list(series)
    whiskers = {name: [(float(x), float(lo), float(hi)) for x, lo, hi in
                       (intervals or {}).get(name, ())] for name in names}
    palette = _colors(names, colors)
    points = {
        name: sorted((float(x), float(y)) for x, y in series[name]
                     if y is not None and (not log_y or y > 0))
        for name in names
    }
    empty = {name for name in names if not points[name]}
    left, right = 70.0, width - 20.0
    legend, legend_height = _legend(names, palette, empty, left, 44, right - left)
    top = 44 + legend_height + 6
    bottom = height - 50.0
    xs = [x for pts in points.values() for x, _ in pts]
    ys = [y for pts in points.values() for _, y in pts]
    ys += [v for ws in whiskers.values() for _, lo, hi in ws for v in (lo, hi)
           if not log_y or v > 0]
    if reference is not None:
        ys.append(reference[0])
    x_low, x_high = _domain(xs, from_zero=False, log=False)
    if xs and min(xs) >= 0 and x_low < 0:
        x_low = 0.0
    y_low, y_high = _domain(ys, from_zero=from_zero, log=log_y)
    x_scale = Scale(x_low, x_high, left, right)
    y_scale = Scale(y_low, y_high, bottom, top, log=log_y)
    body = list(legend)
    body += _y_axis(y_scale, left, right, y_label, top, bottom)
    for tick in x_scale.ticks():
        x = x_scale(tick)
        body.append(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 5:.1f}" '
                    'stroke="#333"/>')
        body.append(_text(x, bottom + 18, format_tick(tick), text_anchor="middle", fill="#333"))
    body.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" '
                'stroke="#333"/>')
    body.append(_text((left + right) / 2, height - 12, x_label, text_anchor="middle",
                      fill="#333"))
    if not xs:
        body.append(_text((left + right) / 2, (top + bottom) / 2, "not measured",
                          text_anchor="middle", fill="#999"))
    if reference is not None:
        y = y_scale(reference[0])
        body.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                    'stroke="#555" stroke-dasharray="6 4"/>')
        body.append(_text(right - 4, y - 5, reference[1], text_anchor="end", fill="#555"))
    drawn = [name for name in names if whiskers[name]]
    for name in names:
        color = palette[name]
        # Whiskers of different series at one x sit side by side, 5 px apart.
        dodge = (drawn.index(name) - (len(drawn) - 1) / 2) * 5 if name in drawn else 0.0
        for x, lo, hi in whiskers[name]:
            if log_y and (lo <= 0 or hi <= 0):
                continue
            px, y_lo, y_hi = x_scale(x) + dodge, y_scale(lo), y_scale(hi)
            body.append(f'<path d="M{px - 3:.1f},{y_lo:.1f}H{px + 3:.1f}M{px:.1f},{y_lo:.1f}'
                        f'V{y_hi:.1f}M{px - 3:.1f},{y_hi:.1f}H{px + 3:.1f}" stroke="{color}" '
                        f'stroke-width="1.5" fill="none">'
                        f"<title>{escape(f'{name} at {x:g}: 95% interval {lo:.4g}–{hi:.4g}')}"
                        "</title></path>")
        coords = [(x_scale(x), y_scale(y)) for x, y in points[name]]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                        'stroke-width="2"/>')
        for (x, y), (px, py) in zip(points[name], coords, strict=True):
            body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}">'
                        f"<title>{escape(f'{name}: {x:g}, {y:.4g}')}</title></circle>")
    return _frame(width, height, title, body)


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str,
    colors: Mapping[str, str] | None = None,
    width: int = 720,
    height: int = 400,
    log_y: bool = False,
) -> str:
    """A grouped bar chart: one group per category, one bar per named series.

    ``series[name][i]`` is the value for ``categories[i]``; None leaves a gap.
    Long category labels are drawn slanted.
    """
    names = list(series)
    for name in names:
        if len(series[name]) != len(categories):
            raise ValueError(f"series {name!r} has {len(series[name])} values for "
                             f"{len(categories)} categories")
    palette = _colors(names, colors)
    values = [v for name in names for v in series[name]
              if v is not None and (not log_y or v > 0)]
    empty = {name for name in names
             if all(v is None or (log_y and v <= 0) for v in series[name])}
    slanted = any(len(c) * _CHAR_WIDTH > (width - 90) / max(len(categories), 1)
                  for c in categories)
    label_space = (max((len(c) for c in categories), default=0) * _CHAR_WIDTH * 0.52 + 20
                   if slanted else 24.0)
    left, right = 70.0, width - 20.0
    legend, legend_height = _legend(names, palette, empty, left, 44, right - left)
    top = 44 + legend_height + 6
    bottom = height - label_space - 10
    y_low, y_high = _domain(values, from_zero=True, log=log_y)
    y_scale = Scale(y_low, y_high, bottom, top, log=log_y)
    body = list(legend)
    body += _y_axis(y_scale, left, right, y_label, top, bottom)
    body.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" '
                'stroke="#333"/>')
    band = (right - left) / max(len(categories), 1)
    bar = band * 0.8 / max(len(names), 1)
    base = y_scale(y_low if log_y else max(y_low, 0.0))
    for index, category in enumerate(categories):
        center = left + band * (index + 0.5)
        for position, name in enumerate(names):
            value = series[name][index]
            if value is None or (log_y and value <= 0):
                continue
            x = left + band * index + band * 0.1 + bar * position
            y = y_scale(value)
            body.append(
                f'<rect x="{x:.1f}" y="{min(y, base):.1f}" width="{bar:.1f}" '
                f'height="{abs(base - y):.1f}" fill="{palette[name]}">'
                f"<title>{escape(f'{category}, {name}: {value:.4g}')}</title></rect>"
            )
        if slanted:
            body.append(_text(center, bottom + 14, category, text_anchor="end", fill="#333",
                              transform=f"rotate(-35 {center:.1f} {bottom + 14:.1f})"))
        else:
            body.append(_text(center, bottom + 16, category, text_anchor="middle", fill="#333"))
    if not values:
        body.append(_text((left + right) / 2, (top + bottom) / 2, "not measured",
                          text_anchor="middle", fill="#999"))
    return _frame(width, height, title, body)


def stacked_bar_chart(
    categories: Sequence[str],
    parts: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str,
    colors: Mapping[str, str] | None = None,
    width: int = 720,
    height: int = 420,
) -> str:
    """One bar per category, made of the named parts stacked bottom to top.

    ``parts[name][i]`` is the size of part ``name`` in ``categories[i]``
    (None or 0: the part is absent from that bar; negative sizes are not
    drawn).  Long category labels are drawn slanted.
    """
    names = list(parts)
    for name in names:
        if len(parts[name]) != len(categories):
            raise ValueError(f"part {name!r} has {len(parts[name])} values for "
                             f"{len(categories)} categories")
    palette = _colors(names, colors)
    totals = [sum(max(parts[name][i] or 0.0, 0.0) for name in names)
              for i in range(len(categories))]
    empty = {name for name in names if not any((v or 0) > 0 for v in parts[name])}
    slanted = any(len(c) * _CHAR_WIDTH > (width - 90) / max(len(categories), 1)
                  for c in categories)
    label_space = (max((len(c) for c in categories), default=0) * _CHAR_WIDTH * 0.6 + 20
                   if slanted else 24.0)
    left, right = 70.0, width - 20.0
    legend, legend_height = _legend(names, palette, empty, left, 44, right - left)
    top = 44 + legend_height + 6
    bottom = height - label_space - 10
    y_low, y_high = _domain(totals, from_zero=True, log=False)
    y_scale = Scale(y_low, y_high, bottom, top)
    body = list(legend)
    body += _y_axis(y_scale, left, right, y_label, top, bottom)
    body.append(f'<line x1="{left:.1f}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" '
                'stroke="#333"/>')
    band = (right - left) / max(len(categories), 1)
    for index, category in enumerate(categories):
        x = left + band * (index + 0.15)
        base = 0.0
        for name in names:
            value = parts[name][index]
            if value is None or value <= 0:
                continue
            y_top, y_base = y_scale(base + value), y_scale(base)
            body.append(
                f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{band * 0.7:.1f}" '
                f'height="{y_base - y_top:.1f}" fill="{palette[name]}">'
                f"<title>{escape(f'{category}, {name}: {value:.4g}')}</title></rect>")
            base += value
        center = left + band * (index + 0.5)
        if slanted:
            body.append(_text(center, bottom + 14, category, text_anchor="end", fill="#333",
                              transform=f"rotate(-35 {center:.1f} {bottom + 14:.1f})"))
        else:
            body.append(_text(center, bottom + 16, category, text_anchor="middle", fill="#333"))
    if not any(totals):
        body.append(_text((left + right) / 2, (top + bottom) / 2, "not measured",
                          text_anchor="middle", fill="#999"))
    return _frame(width, height, title, body)
