"""`make demo` end to end: its main function on the session's local environment, then what it left.

The demo drives the real Pulumi CLI and provider, real API servers and real git; the promotion's pull
request goes to the local stand-in for GitHub's API (GitHub cannot be reached from here). The test runs
it with --keep, checks the kept deployment and rollout repository against what the demo printed, and
destroys the deployment afterwards.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from devenv import demo
from devenv.local import LocalEnvironment
from devenv.pytest_fixtures import local_env  # noqa: F401 (the session's environment)
from rollout_policies.gitops.kube_live import route_weights
from rollout_policies.gitops.stack_config import state_from_text
from rollout_policies.state import Colour


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def live_weights(kubeconfig: Path) -> dict[Colour, int] | None:
    api = config.new_client_from_config(str(kubeconfig))
    try:
        route = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", demo.NAMESPACE, "httproutes", demo.SERVICE
        )
    finally:
        api.close()
    return route_weights(route, demo.SERVICE)


@pytest.mark.e2e
def test_demo_promotes_then_rolls_back_and_git_matches_the_clusters(
    local_env: LocalEnvironment,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    info = local_env.info
    code = demo.main(["--state-dir", str(local_env.state_dir), "--keep"])
    printed = capsys.readouterr()
    try:
        assert code == 0, printed.err
        assert printed.err == ""
        lines = [line.strip() for line in printed.out.splitlines()]
        # Numbered progress, in order, then the summary table.
        assert [line[:3] for line in lines if line[:1] == "["] == [f"[{n}]" for n in range(1, 10)]
        assert "Summary" in lines
        # Both regions up at beta serve stable only; the promotion moves the primary to 2%.
        assert "local-us-east-1 HTTPRoute (read from us-east-1's API server): blue 100 / green 0" in lines
        assert "local-us-west-2 HTTPRoute (read from us-west-2's API server): blue 100 / green 0" in lines
        assert any(line.startswith("decision: PROMOTE") for line in lines)
        promoted = lines.index("local-us-east-1 live HTTPRoute: blue 98 / green 2")
        rolled_back = lines.index("local-us-east-1 live HTTPRoute: blue 100 / green 0")
        assert promoted < rolled_back
        assert any(line.startswith("decision: ROLLBACK  [gate_beyond_alert]") for line in lines)
        assert any(line.startswith("pull request #1 on the GitHub stand-in") for line in lines)
        assert lines.count("drift: in-sync (live {'blue': 100, 'green': 0})") == 2

        # What the demo left: the rollout repository's main says stable 100% at limited...
        run_dir = Path((Path(info.state_dir) / "demo" / demo.KEPT_MARKER).read_text().strip())
        remote = run_dir / "remote.git"
        path = "Pulumi.local-us-east-1.yaml"
        state = state_from_text(git(remote, "show", f"main:{path}"), path)
        assert (state.stage, state.step) == ("limited", 0)
        assert state.weights == {Colour.BLUE: 100, Colour.GREEN: 0}
        decisions = git(remote, "log", "-2", "--format=%(trailers:key=Rollout-Decision,valueonly)", "main")
        assert decisions.split() == ["rollback", "promote"]
        # ...the merged promotion branch is gone, as after GitHub's "delete branch on merge"...
        assert git(remote, "branch", "--list", "rollout/*") == ""
        # ...and each cluster serves what git says.
        assert live_weights(info.kubeconfig("us-east-1")) == {Colour.BLUE: 100, Colour.GREEN: 0}
        assert live_weights(info.kubeconfig("us-west-2")) == {Colour.BLUE: 100, Colour.GREEN: 0}
    finally:
        demo.destroy_kept(info)  # leave the clusters empty for other tests
    with pytest.raises(client.ApiException):
        live_weights(info.kubeconfig("us-east-1"))


def test_demo_without_a_running_environment_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = demo.main(["--state-dir", str(tmp_path / "nothing-here")])
    printed = capsys.readouterr()
    assert code == 2
    assert printed.out == ""
    assert printed.err.count("\n") == 1
    assert "is not running" in printed.err
    assert f"rollout env up --state-dir {tmp_path / 'nothing-here'}" in printed.err
