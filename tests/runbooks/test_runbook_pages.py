"""The human runbook pages match the code: every step a drill runs is named in its page, in order."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import click
import pytest

from rollout_policies.cli.main import cli
from runbooks import backup_restore, region_failover
from runbooks.report import Step

PAGES = Path(region_failover.__file__).parent


def headings(page: str) -> list[str]:
    return re.findall(r"^###\s+(\S+)\s*$", (PAGES / page).read_text(), flags=re.MULTILINE)


def steps_run_by(module: object) -> set[str]:
    """Every step name the module's source passes to ``.step(...)``, ``.planned(...)`` or STEPS."""
    tree = ast.parse(Path(module.__file__).read_text())  # type: ignore[attr-defined]
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("step", "planned")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


@pytest.mark.parametrize(
    ("module", "page"),
    [(region_failover, "region-failover.md"), (backup_restore, "backup-restore.md")],
)
def test_every_step_the_code_runs_has_a_section_in_its_page_in_order(module: object, page: str) -> None:
    steps: tuple[Step, ...] = module.STEPS  # type: ignore[attr-defined]

    assert headings(page) == [step.name for step in steps]
    assert steps_run_by(module) <= {step.name for step in steps}


def test_the_pages_commands_exist_with_their_options() -> None:
    """Each ``rollout ...`` line in the pages names a real command and only options it has."""
    checked = 0
    for page in sorted(PAGES.glob("*.md")):
        for line in re.findall(r"^rollout .*$", page.read_text(), flags=re.MULTILINE):
            words = shlex.split(line.split("  #")[0].replace("\\", ""))[1:]
            command: click.Command = cli
            ctx = click.Context(cli)
            while isinstance(command, click.Group) and words and not words[0].startswith("-"):
                found = command.get_command(ctx, words.pop(0))
                assert found is not None, f"{page.name}: {line}"
                command = found
            known = {opt for param in command.params for opt in getattr(param, "opts", [])}
            for word in words:
                if word.startswith("--"):
                    assert word.split("=")[0] in known, f"{page.name}: {word} in {line}"
            checked += 1
    assert checked >= 6
