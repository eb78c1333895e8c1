"""`rollout serve` stops gracefully: on SIGTERM it accepts nothing new and finishes the rollback in flight.

The real command runs as its own process. Its applier is the test rig's ``recording`` applier
(tests/crashrig: writes the applied weights to a file, and here takes a few seconds, as ``pulumi up``
does), because applying to a cluster is not what this test is about.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from alerting_helpers import TOKEN, alert, notification

from simulator.harness import STACK, GitRemote

RIG = Path(__file__).parents[1] / "crashrig"
ROLLOUT = Path(sys.executable).with_name("rollout")


def test_sigterm_lets_the_rollback_in_flight_finish_and_refuses_new_connections(tmp_path: Path) -> None:
    remote = GitRemote(tmp_path)
    clone = remote.clone(tmp_path / "clone", "serve")
    live = tmp_path / "live"
    live.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(RIG),
        "ROLLOUT_TEST_LIVE_DIR": str(live),
        "ROLLOUT_TEST_APPLY_SECONDS": "3",
        "ROLLOUT_WEBHOOK_TOKEN": TOKEN,
    }
    serve = subprocess.Popen(
        [str(ROLLOUT), "serve", "--repo", str(clone), "--stack", STACK, "--listen", "127.0.0.1:0",
         "--applier", "recording", "--actor", "rollout-serve@test"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serve.stderr is not None
        url = None
        for line in serve.stderr:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "rollout serve did not start"
        port = int(url.rsplit(":", 1)[1])
        answer: dict[str, object] = {}

        def post() -> None:
            body = notification(alert(starts_at=datetime.now(UTC) - timedelta(seconds=20)))
            response = httpx.post(
                f"{url}/alerts", content=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
            )
            answer.update(status=response.status_code, **response.json())

        sender = threading.Thread(target=post)
        sender.start()
        deadline = time.monotonic() + 60
        while not (live / f"{STACK}.json.partial").exists():  # the apply is under way
            assert time.monotonic() < deadline and sender.is_alive(), answer
            time.sleep(0.02)
        serve.send_signal(signal.SIGTERM)

        refused = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.05)
            except ConnectionRefusedError:
                refused = True
        sender.join(timeout=60)
        code = serve.wait(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait(timeout=10)
    assert refused, "new connections were still accepted after SIGTERM"
    assert (answer["status"], answer["result"]) == (200, "rolled-back")
    assert json.loads((live / f"{STACK}.json").read_text()) == {"blue": 100, "green": 0}
    assert remote.commits_since_seed() == [answer["commit"]]
    assert code == 0
