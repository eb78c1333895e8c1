"""Helpers for the CLI tests: a team's repository holding the shipped production stack configs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True)
    return done.stdout


def clone(bare: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(bare), str(target)], check=True, capture_output=True)
    git(target, "config", "user.name", f"tester {target.name}")
    git(target, "config", "user.email", f"{target.name}@example.test")
    return target


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone of a bare remote holding the shipped production stack configs, as a team's repository."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = clone(bare, tmp_path / "work")
    for path in sorted(ROOT.glob("Pulumi.prod-*.yaml")):
        shutil.copy(path, work / path.name)
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "seed: the shipped production stacks")
    git(work, "push", "-q", "origin", "main")
    return work
