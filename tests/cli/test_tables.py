"""The CLI's tables: fitted to the terminal's width, coloured only on a terminal, NO_COLOR honoured.

The terminal is a real pseudo-terminal (the pty module) with its window size set, so rich finds the
width and the colour support the way it does for a person at a shell.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

# SGR colour parameters: 30-37, 38;..., 90-97 (bold and the like are not colour)
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|9[0-7])(?:;[0-9;]*)?m")
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", **extra)
    return env


def on_terminal(args: list[str], columns: int, **extra: str) -> str:
    """Run `rollout ARGS` with its stdout on a pseudo-terminal COLUMNS wide; return what it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout_policies.cli.main", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=base_env(**extra),
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.fixture
def evaluate_args(tmp_path: Path) -> list[str]:
    """`rollout evaluate` of the shipped plan's first stage with no measurements: every gate no_data."""
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(
        "observed_at: 2026-11-28T08:59:00Z\nstage_started_at: 2026-11-28T08:00:00Z\nmetrics: {}\n"
    )
    stage = load_plan(DEFAULT_PLAN).stages[0].id
    return ["evaluate", "--stage", stage, "--metrics-file", str(metrics), "--now", "2026-11-28T09:00:00Z"]


def test_verdicts_are_coloured_on_a_terminal(evaluate_args: list[str]) -> None:
    out = on_terminal(evaluate_args, 120)
    assert COLOUR.search(out) and "no_data" in ESCAPE.sub("", out)


def test_no_color_leaves_the_terminal_uncoloured(evaluate_args: list[str]) -> None:
    out = on_terminal(evaluate_args, 120, NO_COLOR="1")
    assert not COLOUR.search(out) and "no_data" in out


def test_a_pipe_gets_no_escape_codes(evaluate_args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", *evaluate_args],
        capture_output=True,
        text=True,
        env=base_env(),
        check=True,
    )
    assert "\x1b" not in done.stdout and "no_data" in done.stdout


@pytest.mark.parametrize("columns", [60, 100])
def test_tables_fit_the_terminal_width(columns: int) -> None:
    out = ESCAPE.sub("", on_terminal(["plan", "show"], columns))
    table_lines = [line for line in out.splitlines() if "  " in line.strip()]  # cells are two apart
    assert table_lines and max(len(line.rstrip()) for line in table_lines) <= columns
    # every trigger's text is on the page, wrapped or not
    flat = " ".join(out.split())
    for trigger in load_plan(DEFAULT_PLAN).triggers:
        assert all(word in flat for word in trigger.text.split())
