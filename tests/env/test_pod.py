"""devenv.pod: a declared container becomes a local process line the way the kubelet resolves it."""

from __future__ import annotations

import pytest

from devenv.pod import LocalPod, PodError, expand

SECRETS = {("web", "token"): "s3cret"}


def _pod(tmp_path) -> LocalPod:
    return LocalPod("p", "ns", "127.0.0.9", tmp_path, lambda name, key: SECRETS.get((name, key)))


def _spec(**container) -> dict:
    base = {
        "name": "c",
        "command": ["rollout"],
        "workingDir": "/work",
        "volumeMounts": [{"name": "w", "mountPath": "/work"}],
    }
    return {"containers": [{**base, **container}], "volumes": [{"name": "w", "emptyDir": {}}]}


def test_expansion_follows_kubernetes_rules():
    env = {"A": "1"}
    assert expand("$(A):$(B):$$(A)", env) == "1:$(B):$(A)"


def test_env_values_fields_and_secrets_resolve_in_order(tmp_path):
    spec = _spec(
        args=["--listen", "$(IP):8080", "--token", "$(TOKEN)"],
        env=[
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "web", "key": "token"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "web", "key": "none", "optional": True}}},
            {"name": "PLAIN", "value": "at $(IP)"},
        ],
    )
    argv, env, workdir = _pod(tmp_path).process(spec, "c", {"PATH": "/bin"})
    assert argv == ["rollout", "--listen", "127.0.0.9:8080", "--token", "s3cret"]
    assert env == {"PATH": "/bin", "IP": "127.0.0.9", "TOKEN": "s3cret", "PLAIN": "at 127.0.0.9"}
    assert workdir == tmp_path / "w" and workdir.is_dir()


def test_a_missing_required_secret_key_is_refused(tmp_path):
    spec = _spec(env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "web", "key": "other"}}}])
    with pytest.raises(PodError, match="secretKeyRef web/other does not exist"):
        _pod(tmp_path).process(spec, "c", {})


def test_only_empty_volumes_can_be_made_locally(tmp_path):
    spec = _spec()
    spec["volumes"] = [{"name": "w", "secret": {"secretName": "x"}}]
    with pytest.raises(PodError, match="only emptyDir"):
        _pod(tmp_path).process(spec, "c", {})


def test_paths_under_a_mount_map_to_its_folder(tmp_path):
    argv, _, _ = _pod(tmp_path).process(_spec(args=["--repo", "/work/repo"]), "c", {})
    assert argv[-1] == str(tmp_path / "w" / "repo")
