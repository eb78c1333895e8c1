"""Elapsed time in words for reasons: ``8d 5m``, ``1d 6h``, ``20m``, ``0s``."""

from __future__ import annotations

from datetime import timedelta

_PARTS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def span(value: timedelta) -> str:
    """Whole seconds, largest units first; negative spans read as ``0s`` (nothing has elapsed)."""
    seconds = max(int(value.total_seconds()), 0)
    parts = []
    for suffix, size in _PARTS:
        if seconds >= size:
            parts.append(f"{seconds // size}{suffix}")
            seconds %= size
    return " ".join(parts) or "0s"
