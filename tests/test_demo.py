"""`make demo` end to end: the short dress rehearsal its recipe runs, on the session's local environment.

The command line is read from the Makefile (the `demo` target's recipe with `DEMO_ARGS` expanded), not
typed again here; only the report folder and the environment's folder are added, as a user would pass
them. The rehearsal drives the real Pulumi CLI and provider, real API servers, Prometheus,
Alertmanager, PostgreSQL, moto and git; GitHub's API is the local stand-in (docs/rehearsal.md).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from devenv.local import LocalEnvironment
from devenv.pytest_fixtures import local_env  # noqa: F401 (the session's environment)

ROOT = Path(__file__).resolve().parents[1]


def make_recipe(target: str) -> list[list[str]]:
    """The recipe lines of ``target``, with the Makefile's variables expanded, split as the shell would."""
    text = (ROOT / "Makefile").read_text()
    variables = {
        m.group(1): m.group(2).strip() for m in re.finditer(r"^([A-Z_]+)\s*\??=\s*(.*)$", text, re.MULTILINE)
    }
    lines = text.split(f"\n{target}:", 1)[1].split("\n")[1:]
    recipe = []
    for line in lines:
        if not line.startswith("\t"):
            break
        expanded = line.strip()
        while "$(" in expanded:
            expanded = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables[m.group(1)], expanded)
        recipe.append(shlex.split(expanded))
    return recipe


@pytest.mark.rehearsal  # about 5 minutes: `make test-rehearsal`, not `make test`
@pytest.mark.e2e
def test_make_demo_is_a_short_rehearsal_that_passes_and_says_where_its_report_is(
    local_env: LocalEnvironment,  # noqa: F811
    tmp_path: Path,
) -> None:
    up, rehearse = make_recipe("demo")
    assert up[1:] == ["env", "up"]  # the session's environment is already up
    assert rehearse[1] == "rehearse"
    where = ["--report", str(tmp_path), "--state-dir", str(local_env.state_dir)]
    done = subprocess.run(
        [str(ROOT / rehearse[0]), *rehearse[1:], *where],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"report: {tmp_path / 'report.html'}" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "PASS", report["failures"]
    (fault,) = report["faults"]
    assert fault["ok"] and fault["rollback_seconds"] <= fault["window_seconds"], fault
    last = {w["stack"]: w for w in report["weights"]}
    assert len(last) == 2 and {row["stage"] for row in last.values()} == {"full"}


def test_the_demo_without_a_running_environment_says_so_in_one_line(tmp_path: Path) -> None:
    _, rehearse = make_recipe("demo")
    where = ["--report", str(tmp_path), "--state-dir", str(tmp_path / "none")]
    done = subprocess.run(
        [str(ROOT / rehearse[0]), *rehearse[1:], *where],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "is not running (run `rollout env up`)" in done.stderr
