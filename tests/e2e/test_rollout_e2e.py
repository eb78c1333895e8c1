"""End to end on the local environment: the real Pulumi CLI and Kubernetes provider, real API servers,
real git. The promotion's pull request goes to a local stand-in for GitHub's API (GitHub cannot be
reached here); everything else is the real component.

The rollout repository is a clone of this project's own HEAD, pushed to a bare remote: the stack
configs, the plan and the program are the ones shipped. Each local stack is pointed at its region's
cluster with a committed ``kubernetes:kubeconfig``, as a real repository would name its cluster.
The tests run in file order and share the deployment, like a rollout does.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config
from pulumi import automation as auto

from devenv.forge_standin import serve_forge
from devenv.local import EnvInfo
from rollout_policies.gitops.kube_live import route_weights
from rollout_policies.gitops.seams import HTTPROUTE_TYPE, AutomationApplier
from rollout_policies.gitops.stack_config import read_state, state_from_text
from rollout_policies.state import Colour

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STACKS = {"local-us-east-1": "us-east-1", "local-us-west-2": "us-west-2"}
SERVICE = "markethub-mobile"
# Its own namespace and Pulumi backend: other end-to-end tests share the session's clusters.
NAMESPACE = "markethub-e2e"
POLICY_PACK = ROOT / "policy" / "run-policy-pack"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Rollout:
    info: EnvInfo
    remote: Path
    work: Path  # the clone the tool commits from and pulumi runs in
    env: dict[str, str]

    def applier(self) -> AutomationApplier:
        return AutomationApplier(self.work, lambda stack: dict(self.env))

    def up(self, stack: str) -> auto.UpResult:
        return self.applier().stack(stack).up(color="never")

    def api(self, stack: str) -> client.ApiClient:
        return config.new_client_from_config(str(self.info.kubeconfig(STACKS[stack])))

    def live_weights(self, stack: str) -> dict[Colour, int] | None:
        route = client.CustomObjectsApi(self.api(stack)).get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", SERVICE
        )
        return route_weights(route, SERVICE)

    def git_weights(self, stack: str) -> dict[Colour, int]:
        """The weights on the remote's main branch: what git says serves traffic."""
        git(self.work, "fetch", "-q", "origin")
        path = f"Pulumi.{stack}.yaml"
        return dict(state_from_text(git(self.work, "show", f"origin/main:{path}"), path).weights)

    def rollout(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            # -P: import the package under test, not the copy inside the rollout repository's clone.
            [sys.executable, "-P", "-m", "rollout_policies.cli.main", *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )


@pytest.fixture(scope="module")
def rollout(local_env_info: EnvInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    base = tmp_path_factory.mktemp("rollout-repo")
    remote, work = base / "remote.git", base / "work"
    git(base, "init", "-q", "--bare", "-b", "main", str(remote))
    git(ROOT, "push", "-q", str(remote), "HEAD:refs/heads/main")
    git(base, "clone", "-q", str(remote), str(work))
    git(work, "config", "user.email", "e2e@markethub.local")
    git(work, "config", "user.name", "e2e")
    for stack, region in STACKS.items():
        path = work / f"Pulumi.{stack}.yaml"
        kubeconfig = local_env_info.kubeconfig(region)
        text = path.read_text().replace(
            "markethub-rollout:namespace: markethub\n", f"markethub-rollout:namespace: {NAMESPACE}\n"
        )
        text = text.replace("veleroNamespace: markethub\n", f"veleroNamespace: {NAMESPACE}\n")
        path.write_text(text + f"  kubernetes:kubeconfig: {kubeconfig}\n")
    backend = base / "pulumi-backend"
    backend.mkdir()
    env = {**os.environ, **local_env_info.pulumi_env(), **local_env_info.aws_env()}
    env["PULUMI_BACKEND_URL"] = backend.as_uri()
    git(work, "commit", "-qam", "Point the local stacks at this environment's clusters")
    git(work, "push", "-q", "origin", "main")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["GITHUB_TOKEN"] = "e2e-token"
    yield Rollout(local_env_info, remote, work, env)
    for stack in STACKS:  # leave the clusters empty for other tests
        with contextlib.suppress(auto.CommandError):
            AutomationApplier(work, lambda s: dict(env)).stack(stack).destroy(color="never")


def test_up_both_regions_at_beta_waits_for_green_and_serves_stable_weights(rollout: Rollout) -> None:
    for stack in STACKS:
        result = rollout.up(stack)
        assert result.summary.result == "succeeded"
        green = client.AppsV1Api(rollout.api(stack)).read_namespaced_deployment(f"{SERVICE}-green", NAMESPACE)
        assert green.status.available_replicas == green.spec.replicas
        assert rollout.live_weights(stack) == {Colour.BLUE: 100, Colour.GREEN: 0}
    # The first `pulumi up` of a stack writes its encryption salt, and nothing else, into its config;
    # a team commits that once, as after `pulumi stack init`.
    changed = [line for line in git(rollout.work, "diff", "-U0").splitlines() if line[:1] in "+-"]
    assert [line for line in changed if not line.startswith(("+++", "---"))] == [
        line for line in changed if line.startswith("+encryptionsalt:")
    ]
    git(rollout.work, "commit", "-qam", "pulumi stack init: encryption salts")
    git(rollout.work, "push", "-q", "origin", "main")


def test_failover_role_follows_each_regions_config(rollout: Rollout) -> None:
    roles = {}
    for stack in STACKS:
        services = client.CoreV1Api(rollout.api(stack)).list_namespaced_service(NAMESPACE).items
        annotations = [s.metadata.annotations or {} for s in services]
        roles[stack] = {
            a["external-dns.alpha.kubernetes.io/aws-failover"]
            for a in annotations
            if "external-dns.alpha.kubernetes.io/aws-failover" in a
        }
    assert roles == {"local-us-east-1": {"PRIMARY"}, "local-us-west-2": {"SECONDARY"}}


def _move_to(rollout: Rollout, stack: str, stage: str, step: int, green: int) -> None:
    path = rollout.work / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    state = read_state(path)
    text = text.replace(f"    stage: {state.stage}\n", f"    stage: {stage}\n")
    text = text.replace(f"    step: {state.step}\n", f"    step: {step}\n")
    text = text.replace(f"      blue: {state.weights[Colour.BLUE]}\n", f"      blue: {100 - green}\n")
    text = text.replace(f"      green: {state.weights[Colour.GREEN]}\n", f"      green: {green}\n")
    path.write_text(text)
    assert read_state(path).weights == {Colour.BLUE: 100 - green, Colour.GREEN: green}


def test_a_step_within_a_stage_updates_the_httproute_and_the_flags_split_only(rollout: Rollout) -> None:
    stack = "local-us-east-1"
    _move_to(rollout, stack, "limited", 0, 2)
    rollout.up(stack)
    _move_to(rollout, stack, "limited", 1, 5)

    changes: dict[str, list[str]] = {}

    def record(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value not in ("same", "read"):
            changes.setdefault(pre.metadata.op.value, []).append(pre.metadata.type)

    stack_ = rollout.applier().stack(stack)
    stack_.preview(color="never", diff=True, on_event=record)
    # the route's weights in place; the flags ConfigMap, whose split of the features by user follows
    # the weight, is replaced under the same name (the Kubernetes provider replaces a changed
    # ConfigMap, as at a stage change), so the Deployments that mount it are untouched
    config_map = "kubernetes:core/v1:ConfigMap"
    assert changes == {
        "update": [HTTPROUTE_TYPE],
        "replace": [config_map],
        "create-replacement": [config_map],
        "delete-replaced": [config_map],
    }

    stack_.up(color="never")
    assert rollout.live_weights(stack) == {Colour.BLUE: 95, Colour.GREEN: 5}
    git(rollout.work, "checkout", "-q", "--", ".")  # the rollout tool, not this test, commits state


def test_policy_pack_rejects_a_config_that_skips_from_beta_to_half_the_traffic(rollout: Rollout) -> None:
    stack = "local-us-west-2"
    _move_to(rollout, stack, "beta", 0, 50)
    try:
        with pytest.raises(auto.CommandError) as failure:
            rollout.applier().stack(stack).preview(color="never", policy_packs=[str(POLICY_PACK)])
        assert "rollout-step-within-plan" in str(failure.value)
        assert "promote one stage at a time" in str(failure.value)
    finally:
        git(rollout.work, "checkout", "-q", "--", ".")


def _healthy_beta_metrics(directory: Path, now: str) -> Path:
    """Every gate of the beta stage at a healthy value and every counted criterion clean, just now."""
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
    from rollout_policies.plan.model import CriterionKind

    plan = load_plan(DEFAULT_PLAN)
    stage = plan.stage("beta")
    metrics: dict[str, object] = {}
    for gate in stage.gates:
        if gate.target is not None:
            bound = gate.target.value
            metrics[gate.metric] = bound - 0.5 if gate.target.op.value in ("<", "<=") else bound + 0.5
    for criterion in (*stage.go, *stage.no_go):
        if criterion.kind is CriterionKind.WINDOW and criterion.metric:
            metrics.setdefault(criterion.metric, {"value": 0, "since": "2026-11-16T09:00:00Z"})
        elif criterion.kind is CriterionKind.COUNT and criterion.metric and criterion.threshold:
            op, bound = criterion.threshold.op.value, criterion.threshold.value
            met = criterion in stage.go  # a go criterion holds; a no-go criterion does not
            metrics.setdefault(criterion.metric, _meeting(op, bound) if met else _clear_of(op, bound))
    for trigger in plan.triggers:
        metrics.setdefault(trigger.metric, _clear_of(trigger.threshold.op.value, trigger.threshold.value))
    path = directory / "metrics.json"
    path.write_text(json.dumps({"observed_at": now, "metrics": metrics}))
    return path


def _meeting(op: str, bound: float) -> float:
    """A value for which ``value <op> bound`` holds."""
    return {"<": bound - 1, "<=": bound, ">": bound + 1, ">=": bound}.get(op, bound)


def _clear_of(op: str, bound: float) -> float:
    """A value for which ``value <op> bound`` does not hold (a quiet trigger, an unmet no-go)."""
    return {">": min(0.0, bound), ">=": bound - 1, "<": bound, "<=": bound + 1}.get(op, bound + 1)


def _beta_signoffs() -> list[str]:
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
    from rollout_policies.plan.model import CriterionKind

    stage = load_plan(DEFAULT_PLAN).stage("beta")
    # Go items signed off as met; no-go items signed off as checked and absent.
    return [c.id for c in (*stage.go, *stage.no_go) if c.kind is CriterionKind.MANUAL]


@pytest.fixture(scope="module")
def forge_standin() -> Iterator[str]:
    """GitHub's pull-request API, stood in for locally (GitHub cannot be reached from here)."""
    with serve_forge(token="e2e-token") as (url, standin):
        yield url
        assert standin.violations == []


def test_a_merged_promotion_is_applied_and_the_cluster_matches_git(
    rollout: Rollout, forge_standin: str
) -> None:
    stack = "local-us-west-2"
    now = "2026-12-04T09:05:00Z"
    metrics = _healthy_beta_metrics(rollout.work.parent, now)
    done = rollout.rollout(
        "promote",
        "--stack",
        stack,
        "--metrics-file",
        str(metrics),
        "--now",
        now,
        "--forge-url",
        forge_standin,
        "--forge-repo",
        "markethub/rollout",
        "--json",
        *[arg for signoff in _beta_signoffs() for arg in ("--signoff", signoff)],
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    proposed = outcome[0] if isinstance(outcome, list) else outcome
    branch = proposed["branch"]
    # Merging the pull request: what GitHub does on merge, done on the bare remote.
    git(rollout.work, "fetch", "-q", "origin")
    git(rollout.work, "merge", "-q", "--ff-only", f"origin/{branch}")
    git(rollout.work, "push", "-q", "origin", "main")
    rollout.up(stack)  # the on-merge workflow's `pulumi up`
    assert rollout.git_weights(stack) == {Colour.BLUE: 98, Colour.GREEN: 2}
    assert rollout.live_weights(stack) == rollout.git_weights(stack)


def test_rollback_apply_commits_stable_weights_and_the_cluster_matches_git(rollout: Rollout) -> None:
    stack = "local-us-west-2"
    done = rollout.rollout(
        "rollback",
        "--stack",
        stack,
        "--reason",
        "e2e: green misbehaves",
        "--apply",
        "--applier",
        "pulumi",
        "--now",
        "2026-12-04T10:00:00Z",
    )
    assert done.returncode == 0, done.stderr
    assert rollout.git_weights(stack) == {Colour.BLUE: 100, Colour.GREEN: 0}
    assert rollout.live_weights(stack) == {Colour.BLUE: 100, Colour.GREEN: 0}
    decision = git(
        rollout.work, "log", "-1", "--format=%(trailers:key=Rollout-Decision,valueonly)", "origin/main"
    )
    assert decision.strip() == "rollback"


def _live_route(rollout: Rollout, stack: str) -> dict[str, object]:
    route: dict[str, object] = client.CustomObjectsApi(rollout.api(stack)).get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", NAMESPACE, "httproutes", SERVICE
    )
    return route


def _cohort_rules(route: dict[str, object]) -> list[object]:
    rules = route["spec"]["rules"]  # type: ignore[index]
    return [rule for rule in rules if any(match.get("headers") for match in rule.get("matches", []))]


def _live_flags(rollout: Rollout, stack: str) -> dict[str, str]:
    config_map = client.CoreV1Api(rollout.api(stack)).read_namespaced_config_map(
        f"{SERVICE}-flags", NAMESPACE
    )
    flags = json.loads(config_map.data["flags.json"])["flags"]
    return {key: flag["defaultVariant"] for key, flag in flags.items()}


def test_a_beta_rollback_takes_the_cohort_route_off_and_serves_the_stable_flags(rollout: Rollout) -> None:
    """At beta the weights are already 0%: the rollback must still take the 50-user cohort off the
    candidate (the HTTPRoute's header rule) and turn the candidate's features off, in one commit
    applied at once by the real applier. Read back from the API server."""
    from infra.flags import flag_key
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

    stack = "local-us-east-1"
    assert read_state(rollout.work / f"Pulumi.{stack}.yaml").stage == "beta"
    git(rollout.work, "pull", "-q", "--ff-only", "origin", "main")
    rollout.up(stack)  # the cluster as git says: beta, the cohort on green
    before = _live_route(rollout, stack)
    assert len(_cohort_rules(before)) == 1
    assert _live_flags(rollout, stack)["rewards-loyalty"] == "enabled"
    commits = git(rollout.work, "rev-list", "--count", "origin/main")

    done = rollout.rollout(
        "rollback", "--stack", stack, "--reason", "e2e: the beta cohort crashes",
        "--apply", "--applier", "pulumi", "--now", "2026-12-04T11:00:00Z",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rolled-back: "), done.stdout
    git(rollout.work, "fetch", "-q", "origin")
    assert int(git(rollout.work, "rev-list", "--count", "origin/main")) == int(commits) + 1
    path = f"Pulumi.{stack}.yaml"
    state = state_from_text(git(rollout.work, "show", f"origin/main:{path}"), path)
    assert (state.stage, state.rolled_back, state.candidate_weight) == ("beta", True, 0)

    after = _live_route(rollout, stack)
    assert _cohort_rules(after) == []
    assert route_weights(after, SERVICE) == {Colour.BLUE: 100, Colour.GREEN: 0}
    assert after["metadata"]["annotations"]["rollout.markethub.io/rolled-back"] == "true"  # type: ignore[index]
    plan = load_plan(DEFAULT_PLAN)
    stable = {flag_key(name): feature.state.value for name, feature in plan.stable_feature_set().items()}
    assert _live_flags(rollout, stack) == stable
    assert stable["rewards-loyalty"] == "disabled" and stable["cart-checkout"] == "enabled"
