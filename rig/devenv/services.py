"""Launchers for real local services (Prometheus, Alertmanager, PostgreSQL, moto) on loopback ports.

Each launcher picks a free 127.0.0.1 port when it starts, keeps its data and its log under the
folder it is given, waits until the service answers, and stops only the process it started (by
its pid: terminate, then kill). A missing binary or a taken port is a one-line ``ServiceError``.

    with Prometheus(tmp / "prom", scrape_targets=["127.0.0.1:9101"]) as prometheus:
        httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "up"})
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Self

import httpx

from rollout_policies.errors import UserError
from runbooks.pgbackrest import archive_command

HOST = "127.0.0.1"
PROMETHEUS_BIN = "/usr/bin/prometheus"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
POSTGRES_BIN_DIR = "/usr/lib/postgresql/15/bin"


class ServiceError(UserError):
    """A local service could not start: missing binary, taken port, or it never became ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


# Services started by this interpreter and not yet stopped: stopped at exit, so an interrupted test
# run or script does not leave them behind (each is still stopped only by its own pid).
_RUNNING: set[Service] = set()


@atexit.register
def _stop_leftovers() -> None:
    for service in list(_RUNNING):
        service.stop(timeout=5.0)


class Service:
    """One local process: started on a free port, watched until ready, stopped by its pid."""

    name = "service"
    # Fast, clean shutdown signal; PostgreSQL needs SIGINT (SIGTERM waits for clients to leave).
    stop_signal = signal.SIGTERM

    def __init__(self, workdir: Path | str, *, port: int | None = None, ready_timeout: float = 30.0) -> None:
        self.workdir = Path(workdir)
        self.requested_port = port
        self.port = port or 0
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen[bytes] | None = None

    # -- what each service says -------------------------------------------------------------
    def binary(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config and data folders before the process starts."""

    def is_ready(self) -> bool:
        raise NotImplementedError

    def popen_user(self) -> str | None:
        """The system user the process runs as (None: the current user)."""
        return None

    def process_env(self) -> dict[str, str] | None:
        """The process's environment (None: this interpreter's)."""
        return None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Self:
        if self.running:
            return self
        binary = self.binary()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise ServiceError(f"{self.name}: binary not found or not executable: {binary}")
        if self.requested_port is not None and not port_is_free(self.requested_port):
            raise ServiceError(f"{self.name}: port {HOST}:{self.requested_port} is already taken")
        self.port = self.requested_port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        user = self.popen_user()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=self.process_env(),
                # Own process group, so a Ctrl-C in the terminal does not reach it before stop() does.
                start_new_session=True,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        _RUNNING.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServiceError(self._exit_message())
            if self.is_ready():
                return
            time.sleep(0.1)
        raise ServiceError(
            f"{self.name}: not ready on {HOST}:{self.port} after {self.ready_timeout:g}s"
            f" (log: {self.log_path})"
        )

    def _exit_message(self) -> str:
        tail = self.log_tail()
        if "address already in use" in tail.lower():
            return f"{self.name}: port {HOST}:{self.port} is already taken (log: {self.log_path})"
        last = tail.strip().splitlines()[-1] if tail.strip() else "no output"
        code = self.process.returncode if self.process else "?"
        return f"{self.name}: exited with status {code} while starting: {last[:300]} (log: {self.log_path})"

    def log_tail(self, size: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process this launcher started: the stop signal, then SIGKILL after ``timeout``."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self.stop_signal)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=timeout)
        self.process = None
        _RUNNING.discard(self)
        self.cleanup()

    def detach(self) -> None:
        """Let the process outlive this interpreter (no stop at exit): for `rollout env up`, whose
        services keep running after the command returns and are stopped later by their pid."""
        _RUNNING.discard(self)

    def cleanup(self) -> None:
        """Remove anything kept outside the workdir (after the process has stopped)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {HOST}:{self.port} pid={self.pid}>"


def _yaml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


class Prometheus(Service):
    """Debian's Prometheus scraping ``scrape_targets`` (``host:port``) every ``scrape_interval``."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path | str,
        scrape_targets: Sequence[str] = (),
        rule_files: Sequence[Path | str] = (),
        alertmanager_url: str | None = None,
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        port: int | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        super().__init__(workdir, port=port, ready_timeout=ready_timeout)
        self.scrape_targets = list(scrape_targets)
        self.rule_files = [str(Path(path).resolve()) for path in rule_files]
        self.alertmanager_url = alertmanager_url
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    def binary(self) -> str:
        return PROMETHEUS_BIN

    def config_yaml(self) -> str:
        lines = [
            "global:",
            f"  scrape_interval: {self.scrape_interval}",
            f"  evaluation_interval: {self.evaluation_interval}",
            "scrape_configs:",
            "  - job_name: targets",
            "    static_configs:",
            f"      - targets: {_yaml_list(self.scrape_targets)}",
        ]
        if self.rule_files:
            lines.append(f"rule_files: {_yaml_list(self.rule_files)}")
        if self.alertmanager_url:
            target = httpx.URL(self.alertmanager_url)
            lines += [
                "alerting:",
                "  alertmanagers:",
                f"    - scheme: {target.scheme}",
                "      static_configs:",
                f'        - targets: ["{target.host}:{target.port}"]',
            ]
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        self.config_path.write_text(self.config_yaml())

    def command(self) -> list[str]:
        return [
            self.binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def reload(
        self, scrape_targets: Sequence[str] | None = None, rule_files: Sequence[Path | str] | None = None
    ) -> None:
        """Rewrite the config (new targets or rules) and ask the running server to reload it."""
        if scrape_targets is not None:
            self.scrape_targets = list(scrape_targets)
        if rule_files is not None:
            self.rule_files = [str(Path(path).resolve()) for path in rule_files]
        self.prepare()
        response = httpx.post(f"{self.url}/-/reload", timeout=10.0)
        if response.status_code != 200:
            raise ServiceError(
                f"prometheus: reload failed: HTTP {response.status_code}: {response.text.strip()}"
            )


class Alertmanager(Service):
    """Debian's Alertmanager with the given configuration (clustering off, loopback only)."""

    name = "alertmanager"

    def __init__(
        self, workdir: Path | str, config_yaml: str, *, port: int | None = None, ready_timeout: float = 30.0
    ) -> None:
        super().__init__(workdir, port=port, ready_timeout=ready_timeout)
        self.config_yaml = config_yaml

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "alertmanager.yml"

    def binary(self) -> str:
        return ALERTMANAGER_BIN

    def prepare(self) -> None:
        self.config_path.write_text(self.config_yaml)

    def command(self) -> list[str]:
        return [
            self.binary(),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            # Without this it would open a gossip port on every interface.
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")


class PostgreSQL(Service):
    """A throwaway PostgreSQL cluster (trust auth, superuser ``postgres``) on a loopback port.

    As root it runs as the ``postgres`` system user, because initdb and postgres refuse root. If that
    user cannot reach ``workdir`` (pytest's temporary folders are private to root), the cluster lives
    in a private folder under the system temp dir instead, linked from ``workdir/pgdata`` and removed
    on stop.
    """

    name = "postgresql"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to leave
    superuser = "postgres"

    def __init__(
        self,
        workdir: Path | str,
        *,
        bin_dir: Path | str = POSTGRES_BIN_DIR,
        port: int | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        super().__init__(workdir, port=port, ready_timeout=ready_timeout)
        self.bin_dir = Path(bin_dir)
        self.data_dir = self.workdir / "pgdata"
        self._private_dir: Path | None = None

    def dsn_for(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@{HOST}:{self.port}/{dbname}"

    @property
    def dsn(self) -> str:
        return self.dsn_for()

    def tool(self, name: str) -> str:
        """The path of a client tool of the same version (psql, pg_dump, pg_restore, ...)."""
        return str(self.bin_dir / name)

    def binary(self) -> str:
        return self.tool("postgres")

    def popen_user(self) -> str | None:
        return self.superuser if os.geteuid() == 0 else None

    def _reachable_by(self, user: str, path: Path) -> bool:
        probe = subprocess.run(["test", "-w", str(path)], user=user, check=False, capture_output=True)
        return probe.returncode == 0

    def prepare(self) -> None:
        user = self.popen_user()
        if (self.data_dir / "PG_VERSION").exists():
            return  # an earlier start made the cluster; keep its data
        if user and not self._reachable_by(user, self.workdir):
            self._private_dir = Path(tempfile.mkdtemp(prefix="markethub-pg-"))
            os.chmod(self._private_dir, 0o755)
            target = self._private_dir / "pgdata"
            self.data_dir.unlink(missing_ok=True)
            self.data_dir.symlink_to(target)
            self.data_dir = target
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        initdb = self.tool("initdb")
        if not os.access(initdb, os.X_OK):
            raise ServiceError(f"postgresql: initdb not found: {initdb}")
        result = subprocess.run(
            [
                initdb,
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"postgresql: initdb failed in {self.data_dir}: {last[0]}")

    def command(self) -> list[str]:
        return [
            self.binary(),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={HOST}",
            # TCP only: socket paths under deep temp folders can exceed the 107-byte limit.
            "-c",
            "unix_socket_directories=",
            # Throwaway data: durability is not worth the time.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def is_ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def cleanup(self) -> None:
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
            self.data_dir = self.workdir / "pgdata"
            self.data_dir.unlink(missing_ok=True)


class ArchivingPostgreSQL(PostgreSQL):
    """PostgreSQL with WAL archiving on to a pgBackRest stanza, for the backups and the restore drill.

    ``repository_env`` is pgBackRest's repository settings (``PGBACKREST_*``, as the CronJobs set
    them); the server's ``archive_command`` pushes every WAL segment there. pgBackRest talks to the
    server over a Unix socket in a short private folder (TCP stays on 127.0.0.1 for everyone else).
    ``backup_env`` is what a backup job on this host needs: the repository plus where the data is.
    """

    name = "postgresql"

    def __init__(self, workdir: Path | str, repository_env: dict[str, str], **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.repository_env = dict(repository_env)
        self.stanza = self.repository_env["PGBACKREST_STANZA"]
        # Short paths: a socket path must fit in 107 bytes; pgBackRest's locks must be writable by
        # both the server's user (archive-push) and the user running backups.
        self.run_dir = Path(tempfile.mkdtemp(prefix="mh-pgrun-"))
        os.chmod(self.run_dir, 0o1777)

    @property
    def socket_dir(self) -> Path:
        return self.run_dir

    def process_env(self) -> dict[str, str]:
        return {**os.environ, **self.backup_env}

    @property
    def backup_env(self) -> dict[str, str]:
        return {
            **self.repository_env,
            "PGBACKREST_PG1_PATH": str(self.data_dir),
            "PGBACKREST_PG1_PORT": str(self.port),
            "PGBACKREST_PG1_SOCKET_PATH": str(self.run_dir),
            "PGBACKREST_PG1_USER": self.superuser,
            "PGBACKREST_LOCK_PATH": str(self.run_dir),
        }

    def command(self) -> list[str]:
        base = super().command()
        base[base.index("unix_socket_directories=")] = f"unix_socket_directories={self.run_dir}"
        return [
            *base,
            "-c", "wal_level=replica",
            "-c", "archive_mode=on",
            "-c", f"archive_command={archive_command(self.stanza, str(self.data_dir))}",
            # A segment is archived at least every minute even when writes are few: the RPO's floor.
            "-c", "archive_timeout=60",
            # The restore drill's RPO compares the newest commit times of the source and the restore.
            "-c", "track_commit_timestamp=on",
            # A backup needs full page images to be consistent when restored.
            "-c", "full_page_writes=on",
        ]  # fmt: skip

    def remove_run_dir(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _moto_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "moto_server"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("moto_server") or str(beside_python)


class MotoServer(Service):
    """moto's AWS stand-in (``moto_server`` from the moto[server] package) on a loopback port."""

    name = "moto"

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def binary(self) -> str:
        return _moto_server_binary()

    def command(self) -> list[str]:
        return [self.binary(), "-H", HOST, "-p", str(self.port)]

    def is_ready(self) -> bool:
        return http_ok(f"{self.endpoint_url}/moto-api/data.json")

    # moto accepts any keys; explicit ones keep boto3 from looking for real credentials.
    credentials = MappingProxyType(
        {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    )

    @property
    def credentials_for_provider(self) -> dict[str, str]:
        """The same keys as settings for the CloudWatch metric provider (``region`` not ``region_name``)."""
        return {
            "aws_access_key_id": self.credentials["aws_access_key_id"],
            "aws_secret_access_key": self.credentials["aws_secret_access_key"],
            "region": self.credentials["region_name"],
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server."""
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint_url, **{**self.credentials, **kwargs})

    def reset(self) -> None:
        """Forget every resource (moto's reset API), so tests sharing one server start clean."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=10.0).raise_for_status()


__all__ = [
    "HOST",
    "Alertmanager",
    "ArchivingPostgreSQL",
    "MotoServer",
    "PostgreSQL",
    "Prometheus",
    "Service",
    "ServiceError",
    "free_port",
    "port_is_free",
]
