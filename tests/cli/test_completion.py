"""Shell completion: the lines docs/cli.md gives for bash, zsh and fish generate a script for the
installed `rollout` command, and the completions it asks for name commands, stacks and stages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.stack_file import stacks_in

ROOT = Path(__file__).resolve().parents[2]
ROLLOUT = Path(sys.executable).parent / "rollout"  # the installed console script, as a shell runs it
# shell -> what its script must do: register the completion function for the `rollout` command
REGISTERS = {
    "bash": "complete -o nosort -F _rollout_completion rollout",
    "zsh": "compdef _rollout_completion rollout",
    "fish": "complete --no-files --command rollout",
}


def documented() -> dict[str, str]:
    """shell -> the command line docs/cli.md tells its users to run."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    found = re.findall(r"^(?:eval \"\$\()?(_ROLLOUT_COMPLETE=(\w+)_source rollout)", text, re.MULTILINE)
    return {shell: line for line, shell in found}


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{ROLLOUT.parent}{os.pathsep}{os.environ['PATH']}", **extra}


def test_the_docs_give_a_line_for_bash_zsh_and_fish() -> None:
    assert sorted(documented()) == ["bash", "fish", "zsh"]


@pytest.mark.parametrize("shell", sorted(REGISTERS))
def test_the_documented_line_generates_the_shells_script(shell: str) -> None:
    done = subprocess.run(
        ["sh", "-c", documented()[shell]], capture_output=True, text=True, env=environment(), check=True
    )
    assert REGISTERS[shell] in done.stdout and done.stderr == ""


def test_bash_loads_the_script_and_registers_rollout() -> None:
    assert shutil.which("bash")
    done = subprocess.run(
        ["bash", "-c", f'eval "$({documented()["bash"]})" && complete -p rollout'],
        capture_output=True,
        text=True,
        env=environment(),
        check=True,
    )
    assert done.stdout.strip() == REGISTERS["bash"]


def complete(words: str, cwd: Path) -> list[str]:
    """What the bash script's function gets back for the command line WORDS (cursor at its end)."""
    parts = words.split(" ")
    done = subprocess.run(
        [str(ROLLOUT)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment(_ROLLOUT_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1)),
        check=True,
    )
    return [line.split(",", 1)[1] for line in done.stdout.splitlines()]


def test_completes_commands_stacks_and_stages(tmp_path: Path) -> None:
    for path in ROOT.glob("Pulumi.*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    assert complete("rollout st", tmp_path) == ["status"]
    assert complete("rollout status --stack ", tmp_path) == list(stacks_in(ROOT))
    assert complete("rollout rollback --stack prod-us", tmp_path) == [
        s for s in stacks_in(ROOT) if s.startswith("prod-us")
    ]
    assert complete("rollout evaluate --stage ", tmp_path) == [s.id for s in load_plan(DEFAULT_PLAN).stages]
