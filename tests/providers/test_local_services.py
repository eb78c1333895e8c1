"""The local service launchers in rig/devenv/services.py (used by these and other tests)."""

from __future__ import annotations

import os
import signal
import socket

import httpx
import psycopg
import pytest

from devenv.services import HOST, MotoServer, Prometheus, ServiceError

pytestmark = pytest.mark.services


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_missing_binary_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(Prometheus, "binary", lambda self: str(tmp_path / "no-such-prometheus"))

    with pytest.raises(ServiceError) as raised:
        Prometheus(tmp_path).start()

    assert (
        str(raised.value)
        == f"prometheus: binary not found or not executable: {tmp_path / 'no-such-prometheus'}"
    )


def test_taken_port_is_a_one_line_error(tmp_path):
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]

        with pytest.raises(ServiceError) as raised:
            MotoServer(tmp_path, port=port).start()

    assert str(raised.value) == f"moto: port {HOST}:{port} is already taken"


def test_context_manager_stops_the_process_it_started_even_on_error(tmp_path):
    with pytest.raises(RuntimeError), MotoServer(tmp_path) as moto:
        pid = moto.pid
        assert pid_alive(pid)
        raise RuntimeError("test body failed")

    assert not pid_alive(pid)
    assert moto.pid is None


def test_prometheus_loads_rule_files_and_points_at_alertmanager(
    tmp_path, prometheus_factory, alertmanager_factory
):
    alertmanager = alertmanager_factory("route:\n  receiver: rollout\nreceivers:\n  - name: rollout\n")
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n  - name: rollback\n    rules:\n"
        "      - alert: CrashRateHigh\n        expr: sum(markethub_crash_rate_percent) > 5\n        for: 5m\n"
    )

    prometheus = prometheus_factory(rule_files=[rules], alertmanager_url=alertmanager.url)

    loaded = httpx.get(f"{prometheus.url}/api/v1/rules").json()["data"]["groups"]
    config = httpx.get(f"{prometheus.url}/api/v1/status/config").json()["data"]["yaml"]
    assert [rule["name"] for group in loaded for rule in group["rules"]] == ["CrashRateHigh"]
    assert f"{HOST}:{alertmanager.port}" in config
    assert httpx.get(f"{alertmanager.url}/api/v2/status").status_code == 200


def test_postgres_serves_its_dsn_as_the_postgres_user(postgres):
    with psycopg.connect(postgres.dsn) as connection:
        user, port = connection.execute("SELECT current_user, inet_server_port()").fetchone()

    assert (user, port) == ("postgres", postgres.port)
    if os.geteuid() == 0:  # initdb and postgres refuse root: the launcher must have switched user
        assert os.stat(postgres.data_dir).st_uid != 0


def test_moto_client_talks_to_the_local_server(moto_server):
    identity = moto_server.client("sts").get_caller_identity()  # no side effect on the shared server

    assert identity["Account"] == "123456789012"  # moto's fixed account: not real AWS


def test_prometheus_reload_picks_up_new_rule_files(tmp_path, prometheus_factory):
    prometheus = prometheus_factory()
    rules = tmp_path / "triggers.yml"
    rules.write_text(
        "groups:\n  - name: rollback\n    rules:\n"
        "      - alert: DatabaseConnectionLoss\n        expr: vector(1)\n"
    )

    prometheus.reload(rule_files=[rules])

    loaded = httpx.get(f"{prometheus.url}/api/v1/rules").json()["data"]["groups"]
    assert [rule["name"] for group in loaded for rule in group["rules"]] == ["DatabaseConnectionLoss"]


def test_interpreter_exit_stops_a_service_left_running(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from devenv.services import MotoServer\n"
        f"moto = MotoServer({str(tmp_path)!r}).start()\n"
        "print(moto.pid, flush=True)\n"
        "sys.exit(0)\n"  # no stop(): the exit hook must do it
    )
    finished = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )

    pid = int(finished.stdout.strip())
    left_running = pid_alive(pid)
    if left_running:  # clean up what the hook missed before failing
        os.kill(pid, signal.SIGKILL)
    assert not left_running
