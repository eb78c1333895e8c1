"""Open a report in headless Chromium (Debian's chromium) and read back the DOM it rendered."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return found


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    done = subprocess.run(
        [chromium(), *FLAGS, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def script_errors(dom: str) -> str:
    box = re.search(r'<pre id="script-errors"[^>]*>(.*?)</pre>', dom, re.S)
    assert box is not None, dom[:500]
    return box.group(1).strip()


def plots_counted_by_the_page(dom: str) -> int:
    """What the page's own script counted: ``figure.plot svg`` elements the browser laid out."""
    found = re.search(r'<body[^>]*data-plots="(\d+)"', dom)
    assert found is not None, "the page's script did not run"
    return int(found.group(1))


def figures(dom: str) -> dict[str, str]:
    """Each ``<figure class="plot" id=...>``'s inner markup, by id."""
    return dict(re.findall(r'<figure class="plot" id="([^"]+)">(.*?)</figure>', dom, re.S))


def assert_self_contained(html: str) -> None:
    assert not re.search(r"<script[^>]+src=", html), "every script is inline"
    assert not re.search(r"<link[^>]+href=", html), "no stylesheet from elsewhere"
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html), "nothing fetched from the network"
