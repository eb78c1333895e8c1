"""The digest as an HTML page (the daily stand-up digest, the weekly executive report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout_policies.pages import page


def render(data: dict[str, Any]) -> str:
    return page.render("digest.html.j2", data=data)


def write(data: dict[str, Any], path: Path) -> Path:
    return page.write_page(path, render(data))
