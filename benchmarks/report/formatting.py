"""How the report writes numbers: values, durations, ratios, counts and shares.

Every number a section puts into a block goes through one of these
functions, so the same quantity reads the same everywhere; ``None`` (a value
the results do not hold) becomes "not measured" or a dash, never a made-up
zero.  These are plain functions of their arguments: they do not look at the
results document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ..stats import Interval

NOT_MEASURED = "not measured"
DASH = "–"


def fmt(value: float | None) -> str:
    """A number with about three significant digits; None is "not measured"."""
    if value is None:
        return NOT_MEASURED
    size = abs(value)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_ms(seconds: float | None) -> str:
    """Seconds shown as milliseconds."""
    return fmt(None if seconds is None else seconds * 1000)


def to_ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds, for charts and fits; None stays None."""
    return None if seconds is None else seconds * 1000


def fmt_ratio(value: float | None) -> str:
    """A ratio such as ``3.25×``."""
    if value is None:
        return NOT_MEASURED
    if value >= 100:
        return f"{value:.0f}×"
    if value >= 10:
        return f"{value:.1f}×"
    return f"{value:.2f}×"


def fmt_count(value: float | None) -> str:
    """A mean count: whole numbers without decimals."""
    if value is None:
        return DASH
    if abs(value - round(value)) < 1e-9:
        return str(round(value))
    return f"{value:.1f}"


def fmt_bytes(value: float | None) -> str:
    """A mean byte count, rounded to whole bytes."""
    return DASH if value is None else f"{value:.0f}"


def plural(count: Any, word: str) -> str:
    """``"1 call"``, ``"3 calls"``, ``"10,000 objects"``."""
    shown = f"{count:,}" if isinstance(count, int) and not isinstance(count, bool) else count
    return f"{shown} {word}{'' if count == 1 else 's'}"


def with_interval(value: Interval | None, write: Callable[[float | None], str],
                  scale: float = 1.0) -> str:
    """``"1.93× (1.80–2.05)"``: a value and its 95% interval, each written by ``write``.

    ``scale`` multiplies all three (1000 turns seconds into milliseconds when
    ``write`` is :func:`fmt`).  Without an interval (one sample) the value alone.
    """
    if value is None:
        return write(None)
    text = write(value.estimate * scale)
    if value.low is None or value.high is None:
        return text
    return f"{text} ({write(value.low * scale)}–{write(value.high * scale)})"


def fmt_ratio_ci(value: Interval | None) -> str:
    """A ratio with its interval: ``1.93× (1.80×–2.05×)``."""
    return with_interval(value, fmt_ratio)


def fmt_ms_ci(value: Interval | None) -> str:
    """Seconds shown as milliseconds, with the interval: ``12.1 (11.8–12.6)``."""
    return with_interval(value, fmt_ms)


def fmt_rtt(rtt_ms: float) -> str:
    """An RTT in milliseconds, without trailing zeros."""
    return f"{rtt_ms:g}"


def fmt_percent(value: float | None) -> str:
    """A share as a percentage."""
    return NOT_MEASURED if value is None else f"{value * 100:.0f}%"


def compared(value: float | None, slower: str = "slower", faster: str = "faster") -> str:
    """``"2.00× slower"`` for a ratio above 1, ``"1.50× faster"`` below."""
    if value is None:
        return NOT_MEASURED
    if abs(value - 1) < 0.005:
        return f"as fast (ratio {fmt_ratio(value)})"
    if value > 1:
        return f"{fmt_ratio(value)} {slower}"
    return f"{fmt_ratio(1 / value)} {faster}"


def hide_passwords(text: str) -> str:
    """Mask the password of any URL in ``text``."""
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def listing(items: Iterable[Any]) -> str:
    """Names as a comma-separated list of ``code`` spans, or "none"."""
    return ", ".join(f"`{item}`" for item in items) or "none"
