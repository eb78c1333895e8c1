"""Git over https-style auth with the controller's token: a real git server (git-http-backend) behind
basic auth on 127.0.0.1, cloned and pushed to with the token from ``ROLLOUT_GIT_TOKEN``.

The server is git's own smart-HTTP backend run as a CGI program by a few lines of Python that check
the Authorization header first, as the web server in front of a git host would (GitHub cannot be
reached here). Plain http on loopback: the credential path is the same as for https.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rollout_policies import envvars
from rollout_policies.errors import UserError
from rollout_policies.gitops.repo import GitRepo, clone, git_environment

BACKEND = Path("/usr/lib/git-core/git-http-backend")
TOKEN = "ghs_" + "t0ken" * 6
pytestmark = pytest.mark.skipif(not BACKEND.exists(), reason="git-http-backend is not installed")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


class _GitHttp(BaseHTTPRequestHandler):
    root: Path
    seen_users: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.seen_users.append("x-access-token")
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_HTTP_RECEIVE_PACK": "1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        done = subprocess.run([str(BACKEND)], input=body, env=env, capture_output=True, check=True)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(": ")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "srv"
    root.mkdir()
    seed = tmp_path / "seed"
    _git(tmp_path, "init", "-q", "--bare", "-b", "main", str(root / "rollout.git"))
    _git(tmp_path, "init", "-q", "-b", "main", str(seed))
    (seed / "Pulumi.prod.yaml").write_text("config: {}\n")
    _git(seed, "add", ".")
    _git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "seed")
    _git(seed, "push", "-q", str(root / "rollout.git"), "main")
    handler = type("Handler", (_GitHttp,), {"root": root, "seen_users": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/rollout.git"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(envvars.GIT_TOKEN, TOKEN)
    monkeypatch.setenv("HOME", str(tmp_path))  # no personal git configuration or credential store
    monkeypatch.delenv(envvars.GIT_USERNAME, raising=False)


def test_git_asks_the_helper_and_gets_the_token_from_the_environment(tmp_path):
    env = git_environment({"PATH": os.environ["PATH"], "HOME": str(tmp_path), envvars.GIT_TOKEN: TOKEN})
    done = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=github.com\n\n",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"password={TOKEN}" in done.stdout.splitlines()
    assert "username=x-access-token" in done.stdout.splitlines()
    # The token is in no configuration value and no argument: only the shell reads it.
    assert TOKEN not in "".join(value for key, value in env.items() if key != envvars.GIT_TOKEN)


def test_the_helper_comes_after_credential_config_already_in_the_environment(tmp_path):
    env = git_environment(
        {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "user.name",
            "GIT_CONFIG_VALUE_0": "x",
            envvars.GIT_TOKEN: "t",
        }
    )
    assert env["GIT_CONFIG_COUNT"] == "2" and env["GIT_CONFIG_KEY_1"] == "credential.helper"
    assert env["GIT_CONFIG_VALUE_0"] == "x"


def test_without_a_token_git_gets_no_helper():
    assert "GIT_CONFIG_COUNT" not in git_environment({"PATH": "/bin"})


def test_the_controller_clones_and_pushes_a_rollback_with_the_token(server, token_env, tmp_path):
    work = tmp_path / "volume" / "repo"
    work.parent.mkdir()
    clone(server, work, branch="main")
    repo = GitRepo(work)
    repo.fetch()
    base = repo.sha("refs/remotes/origin/main")
    assert base is not None
    sha = repo.commit_files(
        base, {"Pulumi.prod.yaml": "config: {rolled: back}\n"}, "Rollback", when=datetime.now(UTC).isoformat()
    )
    repo.push(sha, "main", expect=base)
    # The commit is on the server, by the identity the clone was given (a pod has no git config).
    check = tmp_path / "check"
    _git(tmp_path, "clone", "-q", str(tmp_path / "srv" / "rollout.git"), str(check))
    assert _git(check, "log", "-1", "--format=%an <%ae> %s").strip() == "rollout <rollout@localhost> Rollback"


def test_a_wrong_token_fails_the_clone_in_one_line_and_leaves_nothing(server, monkeypatch, tmp_path):
    monkeypatch.setenv(envvars.GIT_TOKEN, "wrong-token-0123456789")
    monkeypatch.setenv("HOME", str(tmp_path))
    work = tmp_path / "repo"
    with pytest.raises(UserError, match=r"^--clone-from: git clone of branch main: .*Authentication failed"):
        clone(server, work, branch="main")
    assert not work.exists() and not (tmp_path / "repo.partial").exists()
