"""`rollout promote | rollback | status` end to end on a real bare remote and the GitHub API stand-in.

The stand-in replaces GitHub (unreachable here) and checks every request against GitHub's OpenAPI
description; see the ``forge`` fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gitops_fixtures import Remote, git, run, write_plan_file

from devenv.forge_standin import ForgeStandIn
from rollout_policies.gitops.stack_config import state_from_text

METRICS = """\
observed_at: 2026-11-20T10:29:00Z
metrics:
  crash_rate: {value: 0.4}
"""
BAD_METRICS = METRICS.replace("0.4", "3.5")


@pytest.fixture
def setup(remote: Remote, tmp_path: Path) -> tuple[Remote, Path, Path, Path]:
    clone = remote.clone("work")
    plan_file = write_plan_file(tmp_path)
    good = tmp_path / "metrics.yaml"
    good.write_text(METRICS)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_METRICS)
    return remote, clone, plan_file, good


def test_promote_command_opens_the_pull_request(
    setup: tuple[Remote, Path, Path, Path],
    forge: tuple[str, ForgeStandIn],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote, clone, plan_file, metrics = setup
    url, standin = forge
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    code, out, err = run(
        [
            "promote", "--plan", str(plan_file), "--repo", str(clone), "--stack", "prod-us",
            "--metrics-file", str(metrics), "--now", "2026-11-20T10:30:00Z",
            "--forge-url", url, "--forge-repo", "markethub/rollout",
            "--reviewer", "DevOps lead=@markethub/devops-leads", "--reviewer", "CTO=@markethub-cto",
            "--json",
        ],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    (result,) = json.loads(out)
    assert result["result"] == "proposed"
    assert result["pull_request"].endswith("/markethub/rollout/pull/1")
    assert "test-token" not in out
    state = state_from_text(remote.show("rollout/prod-us/limited-step-1", "Pulumi.prod-us.yaml"), "x")
    assert state.candidate_weight == 5
    assert standin.pulls[0].teams == ["devops-leads"]


def test_promote_html_writes_each_stacks_gate_report_and_links_it_from_the_pull_request(
    setup: tuple[Remote, Path, Path, Path],
    forge: tuple[str, ForgeStandIn],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _, clone, plan_file, metrics = setup
    url, standin = forge
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    link = "https://github.example/markethub/rollout/actions/runs/7"
    code, _, err = run(
        [
            "promote", "--plan", str(plan_file), "--repo", str(clone), "--stack", "prod-us",
            "--metrics-file", str(metrics), "--now", "2026-11-20T10:30:00Z",
            "--forge-url", url, "--forge-repo", "markethub/rollout",
            "--reviewer", "DevOps lead=@markethub/devops-leads", "--reviewer", "CTO=@markethub-cto",
            "--html", str(tmp_path / "gate-reports"), "--report-link", link,
        ],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    page = tmp_path / "gate-reports" / "prod-us.html"
    data = json.loads(page.with_suffix(".json").read_text())
    assert (data["stack"], data["decisions"][-1]["decision"]) == ("prod-us", "promote")
    assert "Decision: PROMOTE" in page.read_text()
    assert f"[the gate report]({link}) (`prod-us.html` among the run's artifacts)" in standin.pulls[0].body


def test_report_renders_the_gate_report_promote_attaches_and_pushes_nothing(
    setup: tuple[Remote, Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    remote, clone, plan_file, metrics = setup
    before = remote.branches()
    page = tmp_path / "local" / "prod-us.html"
    code, out, err = run(
        [
            "report", "--plan", str(plan_file), "--repo", str(clone), "--stack", "prod-us",
            "--metrics-file", str(metrics), "--now", "2026-11-20T10:30:00Z", "--html", str(page),
        ],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {page}: ")
    data = json.loads(page.with_suffix(".json").read_text())
    assert (data["stack"], data["decisions"][-1]["decision"]) == ("prod-us", "promote")
    assert "Decision: PROMOTE" in page.read_text()
    assert remote.branches() == before


def test_report_names_exactly_one_stack(
    setup: tuple[Remote, Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, clone, plan_file, _ = setup
    code, _, err = run(
        ["report", "--plan", str(plan_file), "--repo", str(clone), "--html", str(tmp_path / "r.html")],
        capsys,
    )
    assert code == 2 and err == "rollout: error: --stack: name exactly one stack to report on\n"
    assert not (tmp_path / "r.html").exists()


def test_promote_exits_3_and_leaves_no_branch_when_a_rollback_is_needed(
    setup: tuple[Remote, Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    remote, clone, plan_file, metrics = setup
    before = remote.branches()
    code, out, _ = run(
        [
            "promote", "--plan", str(plan_file), "--repo", str(clone), "--no-pr",
            "--metrics-file", str(metrics.parent / "bad.yaml"), "--now", "2026-11-20T10:30:00Z",
        ],
        capsys,
    )  # fmt: skip
    assert code == 3
    assert out.count("rollback-needed:") == 2  # both stacks, found from the configs in the clone
    assert remote.branches() == before


def test_rollback_then_status_then_rollback_again(
    setup: tuple[Remote, Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    remote, clone, plan_file, _ = setup
    common = ["--plan", str(plan_file), "--repo", str(clone), "--stack", "prod-us"]
    code, out, _ = run(
        ["rollback", *common, "--reason", "crash spike", "--now", "2026-11-20T11:00:00Z"], capsys
    )
    assert code == 0 and out.startswith("rolled-back: rolled back prod-us in ")
    # The checked-out main was fast-forwarded: the working tree says what git says.
    assert state_from_text((clone / "Pulumi.prod-us.yaml").read_text(), "x").candidate_weight == 0

    code, out, _ = run(["status", *common, "--json"], capsys)
    (row,) = json.loads(out)
    assert row["last_decision"] == "rollback"
    assert row["last_decision_commit"] == git(remote.bare, "rev-parse", "main").strip()
    assert row["weights"] == {"blue": 100, "green": 0}
    assert row["rolled_back"] is True
    assert row["drift"] == "unknown"
    assert row["next_promotion"] == {
        "in_seconds": None,
        "at": None,
        "note": "rolled back: `rollout retry` first",
    }

    code, out, _ = run(["rollback", *common, "--reason", "crash spike"], capsys)
    assert code == 0 and out.startswith("already-rolled-back: already rolled back by ")


def test_status_gives_the_time_to_the_next_promotion_and_gate_verdicts_only_when_asked(
    setup: tuple[Remote, Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, clone, plan_file, _ = setup
    common = ["status", "--plan", str(plan_file), "--repo", str(clone), "--stack", "prod-us"]
    # limited step 0 started 09:00 and bakes 1h
    code, out, _ = run([*common, "--now", "2026-11-20T09:20:00Z", "--json"], capsys)
    (row,) = json.loads(out)
    assert code == 0
    assert (row["next_promotion"]["in_seconds"], row["next_promotion"]["at"]) == (
        2400,
        "2026-11-20T10:00:00Z",
    )
    assert (row["gates"], row["gates_unknown_why"]) == (None, "not evaluated: --gates not asked")
    assert row["workloads"] is None and row["workloads_unknown_why"].startswith("not asked: --live none")

    metrics = tmp_path / "now.yaml"
    metrics.write_text(METRICS.replace("10:29:00", "09:39:00"))
    gates = ["--gates", "--metrics-file", str(metrics), "--now", "2026-11-20T09:40:00Z"]
    code, out, _ = run([*common, *gates, "--json"], capsys)
    (row,) = json.loads(out)
    assert code == 0 and row["next_promotion"]["in_seconds"] == 1200
    assert [(g["metric"], g["verdict"], g["value"]) for g in row["gates"]] == [
        ("crash_rate", "meets_target", 0.4)
    ]
    assert row["gates_decision"] == "hold"  # the bake is not done

    code, out, _ = run([*common, *gates], capsys)
    assert (
        "    next promotion: in 20m (at 2026-11-20T10:00:00Z): clocks hold it; then the gates decide\n" in out
    )
    assert "    gates: crash_rate meets_target (decision now: hold)\n" in out
    assert "    workloads: unknown (not asked: --live none" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rollback", "--reason", "x"], "--stack: name the stacks"),
        (
            ["rollback", "--stack", "nope", "--reason", "x"],
            "--stack nope: Pulumi.nope.yaml is not on origin/main",
        ),
        (["rollback", "--stack", "prod-us", "--reason", " "], "--reason: say why"),
        (["promote", "--now", "yesterday", "--no-pr"], "--now: not a time"),
        (["promote", "--stack", "prod-us"], "--forge-repo: required"),
        (["status", "--live", "kube"], "Invalid value for '--live'"),
        (["status", "--metrics-file", "m.yaml"], "--metrics-file: only with --gates"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    setup: tuple[Remote, Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    remote, clone, plan_file, _ = setup
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    before = remote.branches()
    code, _, err = run([*argv, "--plan", str(plan_file), "--repo", str(clone)], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert remote.branches() == before
