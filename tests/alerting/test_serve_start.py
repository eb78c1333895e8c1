"""What `rollout serve` checks at start in a pod: the clone it makes, the Pulumi CLI its apply needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rollout_policies.cli.main import main
from simulator.harness import STACK, GitRemote

GOOD_TOKEN = "a-long-enough-shared-token"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0), capsys.readouterr().err


@pytest.fixture
def pod_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROLLOUT_WEBHOOK_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a container has no git configuration
    monkeypatch.delenv("ROLLOUT_PULUMI", raising=False)


def test_without_the_pulumi_cli_serve_stops_at_start_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pod_env: None
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # git, but no pulumi
    clone = GitRemote(tmp_path).clone(tmp_path / "clone", "cli")
    code, err = run(["serve", "--repo", str(clone), "--stack", STACK, "--listen", "127.0.0.1:0"], capsys)
    assert code == 2
    assert err.strip() == (
        "rollout: error: --apply: the Pulumi CLI is not on PATH (install it, or set ROLLOUT_PULUMI)"
    )


def test_a_rollout_pulumi_that_is_not_a_program_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pod_env: None
) -> None:
    monkeypatch.setenv("ROLLOUT_PULUMI", str(tmp_path / "missing-pulumi"))
    clone = GitRemote(tmp_path).clone(tmp_path / "clone", "cli")
    code, err = run(["serve", "--repo", str(clone), "--stack", STACK, "--listen", "127.0.0.1:0"], capsys)
    assert code == 2
    assert f"ROLLOUT_PULUMI={tmp_path / 'missing-pulumi'}: not an executable file" in err


def test_clone_from_fills_an_empty_volume_with_a_clone_that_can_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pod_env: None
) -> None:
    remote = GitRemote(tmp_path)
    volume = tmp_path / "volume"
    volume.mkdir()
    # --stack nowhere: everything up to the stack check runs (clone, plan), then it stops.
    code, err = run(
        ["serve", "--repo", str(volume / "repo"), "--clone-from", str(remote.bare), "--stack", "nowhere",
         "--no-apply", "--listen", "127.0.0.1:0"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "--stack nowhere" in err
    repo = volume / "repo"
    assert (repo / f"Pulumi.{STACK}.yaml").is_file()
    identity = subprocess.run(
        ["git", "-C", str(repo), "config", "user.email"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert identity == "rollout@localhost"


def test_clone_from_refuses_a_folder_that_holds_something_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pod_env: None
) -> None:
    remote = GitRemote(tmp_path)
    target = tmp_path / "repo"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    code, err = run(
        ["serve", "--repo", str(target), "--clone-from", str(remote.bare), "--stack", STACK, "--no-apply"],
        capsys,
    )
    assert code == 2
    assert (
        err.strip()
        == f"rollout: error: --repo {target}: not empty and not a git clone, so --clone-from cannot clone"
    )
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
