"""The pulumi-cli applier's failures are one-line errors naming the stack (the real CLI, no program)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollout_policies.errors import UserError
from rollout_policies.gitops.seams import ApplyError, PulumiCliApplier, make_applier

TOOLS_PULUMI = Path.home() / ".cache" / "markethub-rollout" / "tools" / "bin" / "pulumi"


def test_a_missing_pulumi_is_a_one_line_error(tmp_path: Path) -> None:
    applier = PulumiCliApplier(tmp_path, pulumi=str(tmp_path / "no-such-pulumi"))
    with pytest.raises(ApplyError, match=r"^--apply: .*no-such-pulumi not found on PATH$"):
        applier.apply_traffic("prod-us")


@pytest.mark.skipif(not os.access(TOOLS_PULUMI, os.X_OK), reason="the Pulumi CLI is built by `make tools`")
def test_pulumi_failing_names_the_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path / 'state'}")
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    (tmp_path / "state").mkdir()
    applier = PulumiCliApplier(tmp_path, pulumi=str(TOOLS_PULUMI), timeout=120)
    with pytest.raises(ApplyError) as raised:
        applier.apply_traffic("prod-us")
    message = str(raised.value)
    assert message.startswith("--apply: pulumi stack --stack prod-us: ")
    assert "\n" not in message


def test_an_unknown_applier_is_rejected(tmp_path: Path) -> None:
    known = r"\(known: pulumi, pulumi-cli, pulumi-local\)"
    with pytest.raises(UserError, match=rf"^--applier 'kubectl': unknown {known}$"):
        make_applier("kubectl", tmp_path)


def test_the_automation_api_runs_the_cli_from_rollout_pulumi_when_path_has_none(monkeypatch, tmp_path):
    """The pod's PATH may not hold the CLI at all: ROLLOUT_PULUMI alone must do."""
    from devenv.tools import tools_bin
    from rollout_policies.gitops.seams import pulumi_command

    binary = tools_bin() / "pulumi"
    if not binary.exists():
        pytest.skip("the Pulumi CLI is built by `make tools`")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("ROLLOUT_PULUMI", str(binary.resolve()))
    command = pulumi_command()
    assert command.command == str(binary.resolve())
    assert str(command.version).startswith("3.")
