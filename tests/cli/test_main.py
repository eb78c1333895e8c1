"""The `rollout` entry point: its help draws without importing any command, and --version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import click
import pytest

from rollout_policies.cli.main import COMMANDS, cli

HEAVY = ("numpy", "pydantic", "httpx", "ruamel", "kubernetes", "pulumi", "boto3", "psycopg", "rich")


def test_help_imports_no_command_module_and_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from rollout_policies.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY!r} or m.startswith('rollout_policies.cli.') and m != 'rollout_policies.cli.main'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command_with_its_summary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name, entry in COMMANDS.items():
        assert f"  {name}" in done.stdout and entry.summary in done.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_loads_as_a_click_command(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command) and command.name == name


def test_version_prints_the_installed_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == f"rollout {version('markethub-rollout')}\n"
