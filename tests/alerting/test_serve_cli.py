"""``rollout serve`` and ``rollout watch`` refuse bad input with one line and exit status 2."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rollout_policies.cli.main import main
from simulator.harness import STACK, GitRemote

GOOD_TOKEN = "a-long-enough-shared-token"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        ([], None, "--token-env ROLLOUT_WEBHOOK_TOKEN: the variable is not set or empty"),
        ([], "short", "--token-env ROLLOUT_WEBHOOK_TOKEN: the token is shorter than 16 characters"),
        (["--listen", "localhost"], GOOD_TOKEN, "--listen 'localhost': write it as HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], GOOD_TOKEN, "--listen '127.0.0.1:99999': write it as HOST:PORT"),
        (["--dedup-ttl", "forever"], GOOD_TOKEN, "--dedup-ttl 'forever': not a duration"),
        (["--stack", "nowhere"], GOOD_TOKEN, "--stack nowhere"),
        (["--collect-interval", "often"], GOOD_TOKEN, "--collect-interval 'often': not a duration"),
    ],
    ids=[
        "no-token",
        "short-token",
        "no-port",
        "bad-port",
        "bad-ttl",
        "unknown-stack",
        "bad-collect-interval",
    ],
)
def test_serve_refuses_bad_input_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    extra: list[str], env: str | None, message: str,
) -> None:  # fmt: skip
    remote = GitRemote(tmp_path)
    clone = remote.clone(tmp_path / "clone", "cli")
    if env is None:
        monkeypatch.delenv("ROLLOUT_WEBHOOK_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ROLLOUT_WEBHOOK_TOKEN", env)
    argv = ["serve", "--repo", str(clone), "--no-apply", "--listen", "127.0.0.1:0", *extra]
    if "--stack" not in extra:
        argv += ["--stack", STACK]
    code, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert GOOD_TOKEN not in err


def test_serve_with_a_bad_provider_variable_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = GitRemote(tmp_path).clone(tmp_path / "clone", "cli")
    monkeypatch.setenv("ROLLOUT_WEBHOOK_TOKEN", GOOD_TOKEN)
    monkeypatch.setenv("ROLLOUT_JSON_BASE_URLS", "crash_reporter")
    code, err = run(
        ["serve", "--repo", str(clone), "--stack", STACK, "--listen", "127.0.0.1:0", "--no-apply"], capsys
    )
    assert code == 2
    assert "ROLLOUT_JSON_BASE_URLS: 'crash_reporter' is not name=url" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_on_a_taken_port_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = GitRemote(tmp_path).clone(tmp_path / "clone", "cli")
    monkeypatch.setenv("ROLLOUT_WEBHOOK_TOKEN", GOOD_TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run(
            ["serve", "--repo", str(clone), "--stack", STACK, "--listen", f"127.0.0.1:{port}", "--no-apply"],
            capsys,
        )
    assert code == 2
    assert f"--listen 127.0.0.1:{port}:" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stack", STACK], "--prometheus: give the Prometheus URL"),
        (["--stack", STACK, "--prometheus", "prom:9090"], "--prometheus 'prom:9090': not an http(s) URL"),
        (["--prometheus", "http://127.0.0.1:9"], "--stack: name the stacks to watch"),
        (
            ["--stack", STACK, "--prometheus", "http://127.0.0.1:9", "--interval", "often"],
            "--interval 'often'",
        ),
    ],
    ids=["no-prometheus", "bad-url", "no-stack", "bad-interval"],
)
def test_watch_refuses_bad_input_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    extra: list[str], message: str,
) -> None:  # fmt: skip
    monkeypatch.delenv("ROLLOUT_PROMETHEUS_URL", raising=False)
    clone = GitRemote(tmp_path).clone(tmp_path / "clone", "cli")
    code, err = run(["watch", "--repo", str(clone), "--no-apply", *extra], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
