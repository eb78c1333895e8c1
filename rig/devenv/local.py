"""The local two-region environment: a control plane per region, a Pulumi file backend, a git remote, moto.

Everything keeps its state under one folder (``.local/env`` in the work tree by default) and listens on
127.0.0.1 ports picked at start. ``env.json`` in that folder describes what runs where; the command
line (`rollout env status`), the tests and the demo read it.

    with LocalEnvironment(tmp_path / "env") as env:
        env.info.regions["us-east-1"].kubeconfig
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from devenv.cluster import KwokCluster
from devenv.processes import alive, terminate
from devenv.services import MotoServer
from devenv.tools import path_with_tools, tools_bin
from rollout_policies.errors import UserError

DEFAULT_REGIONS = ("us-east-1", "us-west-2")
ENV_FILE = "env.json"


@dataclass(frozen=True)
class RegionInfo:
    """One region's control plane as started."""

    name: str
    kubeconfig: str
    server: str
    cluster_dir: str
    ports: dict[str, int]
    pids: dict[str, int]
    nodes: list[str]


@dataclass(frozen=True)
class EnvInfo:
    """What ``env.json`` says: every endpoint, folder and pid of a running environment."""

    state_dir: str
    regions: dict[str, RegionInfo]
    pulumi_backend_url: str
    pulumi_home: str
    pulumi_passphrase: str
    git_remote: str
    moto_url: str
    moto_pid: int
    tools_bin: str
    started_at: float = field(default_factory=time.time)
    # With `rollout env up --database`: PostgreSQL archiving WAL to pgBackRest's repository on moto
    # (dsn, pid, s3_endpoint: moto's TLS front, tls_front_pid, pgbackrest: the PGBACKREST_* a backup
    # on this host uses). Empty without.
    database: dict[str, Any] = field(default_factory=dict)

    def kubeconfig(self, region: str) -> Path:
        try:
            return Path(self.regions[region].kubeconfig)
        except KeyError:
            known = ", ".join(self.regions)
            raise UserError(f"unknown region {region!r}: the local environment has {known}") from None

    def pulumi_env(self) -> dict[str, str]:
        """Environment variables for the Pulumi CLI: the file backend, offline, tools on PATH."""
        return {
            "PULUMI_BACKEND_URL": self.pulumi_backend_url,
            "PULUMI_CONFIG_PASSPHRASE": self.pulumi_passphrase,
            "PULUMI_HOME": self.pulumi_home,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PATH": path_with_tools(),
        }

    def aws_env(self, region: str = DEFAULT_REGIONS[0]) -> dict[str, str]:
        """Environment variables that point boto3 (and the AWS CLI) at the moto server."""
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EnvInfo:
        data: dict[str, Any] = json.loads(text)
        data["regions"] = {name: RegionInfo(**region) for name, region in data["regions"].items()}
        return cls(**data)


@dataclass(frozen=True)
class ComponentStatus:
    """One line of `rollout env status`."""

    name: str
    running: bool
    detail: str


def default_state_dir() -> Path:
    """``.local/env`` at the top of the git work tree (git-ignored), else under the current folder."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        top = ""
    return Path(top or os.getcwd()) / ".local" / "env"


class LocalEnvironment:
    """Starts, describes and stops the local environment kept under ``state_dir``."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        regions: Sequence[str] = DEFAULT_REGIONS,
        nodes_per_region: int = 3,
        ready_timeout: float = 180.0,
        database: bool = False,
    ) -> None:
        if not regions:
            raise UserError("--region: the environment needs at least one region")
        if len(set(regions)) != len(regions):
            raise UserError(f"--region: regions repeat: {', '.join(regions)}")
        self.state_dir = Path(state_dir or default_state_dir()).resolve()
        self.regions = tuple(regions)
        self.clusters = {
            region: KwokCluster(
                region, self.kwok_workdir, nodes=nodes_per_region, ready_timeout=ready_timeout
            )
            for region in self.regions
        }
        self._moto: MotoServer | None = None
        self._info: EnvInfo | None = None
        self.with_database = database

    # -- folders ----------------------------------------------------------------------------
    @property
    def env_file(self) -> Path:
        return self.state_dir / ENV_FILE

    @property
    def kwok_workdir(self) -> Path:
        return self.state_dir / "kwok"

    @property
    def moto_dir(self) -> Path:
        return self.state_dir / "moto"

    @property
    def moto_pid_file(self) -> Path:
        return self.moto_dir / "moto.pid"

    @property
    def info(self) -> EnvInfo:
        info = self._info or self.load()
        if info is None:
            raise UserError(
                f"the local environment is not up: {self.env_file} does not exist (run `rollout env up`)"
            )
        return info

    def load(self) -> EnvInfo | None:
        """The description of the environment from ``env.json`` (None when there is none)."""
        if not self.env_file.exists():
            return None
        try:
            return EnvInfo.from_json(self.env_file.read_text())
        except (ValueError, TypeError, KeyError) as err:
            raise UserError(f"{self.env_file}: not a valid environment description: {err}") from err

    # -- lifecycle --------------------------------------------------------------------------
    def up(self, progress: Callable[[str], None] | None = None) -> EnvInfo:
        """Start everything (or return the description of what already runs); stop all on failure.

        ``progress`` gets a line as each part starts and is ready (``rollout env up`` prints them:
        a start takes 30-50 s)."""
        existing = self.load()
        if existing is not None and self._all_running(existing):
            self._info = existing
            return existing
        self.down()  # a partial or stale environment: start afresh
        try:
            info = self._start(progress or (lambda line: None))
        except BaseException:
            self.down(strict=False)
            raise
        self._info = info
        return info

    def _start(self, progress: Callable[[str], None]) -> EnvInfo:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        regions: dict[str, RegionInfo] = {}
        # Every region's tools, looked up once: a missing one is the one line said, before anything starts.
        binaries = {region: cluster.binaries() for region, cluster in self.clusters.items()}
        for region, cluster in self.clusters.items():
            progress(f"[env] region {region}: starting etcd, kube-apiserver and {cluster.nodes} kwok nodes")
            began = time.monotonic()
            cluster.start(binaries[region])
            progress(f"[env] region {region}: ready in {time.monotonic() - began:.1f} s")
            assert cluster.ports is not None
            regions[region] = RegionInfo(
                name=region,
                kubeconfig=str(cluster.kubeconfig),
                server=cluster.server,
                cluster_dir=str(cluster.cluster_dir),
                ports=cluster.ports.as_dict(),
                pids=cluster.pids(),
                nodes=cluster.node_names(),
            )
        backend = self.state_dir / "pulumi" / "backend"
        home = self.state_dir / "pulumi" / "home"
        backend.mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        remote = self._git_remote()
        progress("[env] moto (the AWS stand-in): starting")
        self._moto = MotoServer(self.moto_dir).start()
        # moto must outlive `rollout env up`; `env down` (or this object's down()) stops it by pid.
        self._moto.detach()
        assert self._moto.pid is not None
        self.moto_pid_file.write_text(f"{self._moto.pid} {self._moto.port}\n")
        database = self.start_database(self._moto, progress) if self.with_database else {}
        info = EnvInfo(
            database=database,
            state_dir=str(self.state_dir),
            regions=regions,
            pulumi_backend_url=backend.as_uri(),
            pulumi_home=str(home),
            # A throwaway environment's secrets: random per `up`, kept in env.json for the tools.
            pulumi_passphrase=secrets.token_urlsafe(24),
            git_remote=str(remote),
            moto_url=self._moto.endpoint_url,
            moto_pid=self._moto.pid,
            tools_bin=str(tools_bin()),
        )
        temporary = self.env_file.with_suffix(".json.tmp")
        temporary.write_text(info.to_json())
        temporary.replace(self.env_file)  # readers never see half a file
        return info

    @property
    def database_dir(self) -> Path:
        return self.state_dir / "database"

    def start_database(self, moto: MotoServer, progress: Callable[[str], None]) -> dict[str, Any]:
        """PostgreSQL with WAL archiving to the local stack's pgBackRest repository (S3 on moto,
        through a TLS front: pgBackRest speaks S3 over https only), and its stanza created."""
        from devenv.services import ArchivingPostgreSQL
        from devenv.tls_front import TlsFront
        from infra.settings import settings_from_stack_file
        from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
        from runbooks.pgbackrest import Repository, repository_env

        plan = load_plan(DEFAULT_PLAN)
        stack = settings_from_stack_file(Path(__file__).parents[2] / "Pulumi.local-us-east-1.yaml")
        progress("[env] PostgreSQL with WAL archiving to pgBackRest on moto: starting")
        front = TlsFront(self.database_dir / "tls", moto.port).start()
        front.detach()
        bucket = stack.backup.bucket or f"{plan.service}-backups"
        moto.client("s3").create_bucket(Bucket=bucket)
        repo = Repository(
            bucket,
            f"/{stack.backup.prefix}/{plan.service}",
            stack.region,
            plan.service,
            f"https://{front.endpoint}",
        )
        env = {
            **repository_env(repo, plan.objectives),
            "PGBACKREST_REPO1_S3_KEY": "testing",
            "PGBACKREST_REPO1_S3_KEY_SECRET": "testing",
        }
        db = ArchivingPostgreSQL(self.database_dir / "pg", env).start()
        db.detach()
        assert db.pid is not None and front.pid is not None
        with contextlib.suppress(Exception):
            import psycopg

            with psycopg.connect(db.dsn, autocommit=True) as conn:
                conn.execute("CREATE DATABASE markethub")
        result = subprocess.run(
            ["pgbackrest", "stanza-create"], env={**os.environ, **db.backup_env},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise UserError(f"pgbackrest stanza-create failed: {result.stderr.strip()[-300:]}")
        return {
            "dsn": db.dsn_for("markethub"),
            "pid": db.pid,
            "port": db.port,
            "s3_endpoint": f"https://{front.endpoint}",
            "tls_front_pid": front.pid,
            "tls_front_port": front.port,
            "pgbackrest": db.backup_env,
        }

    @staticmethod
    def stop_database(database: dict[str, Any]) -> list[str]:
        """Stop the database and its TLS front (by their pids, checked against their command lines)."""
        if not database:
            return []
        left = terminate([int(database["pid"])], f"-p {database['port']}")
        left += terminate([int(database["tls_front_pid"])], f"--listen-port {database['tls_front_port']}")
        return [f"database pid {pid}" for pid in left]

    def _git_remote(self) -> Path:
        remote = self.state_dir / "git" / "remote.git"
        if not (remote / "HEAD").exists():
            remote.parent.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise UserError(f"git init --bare {remote} failed: {result.stderr.strip()}")
        return remote

    def down(self, *, strict: bool = True) -> list[str]:
        """Stop every process this environment started (clusters, moto), found from its folder.

        Returns what is still running afterwards; with ``strict`` that is a UserError instead.
        The state (Pulumi backend, git remote) stays, so a later `up` keeps the stacks' history.
        """
        left: list[str] = []
        cluster_dirs = self.kwok_workdir / "clusters"
        names = set(self.regions) | (
            {p.name for p in cluster_dirs.iterdir()} if cluster_dirs.is_dir() else set()
        )
        for name in sorted(names):
            cluster = self.clusters.get(name) or KwokCluster(name, self.kwok_workdir)
            left += [f"{name} pid {pid}" for pid in cluster.stop()]
        with contextlib.suppress(UserError):
            loaded = self.load()
            left += self.stop_database(loaded.database if loaded else {})
        left += self._stop_moto()
        with contextlib.suppress(FileNotFoundError):
            self.env_file.unlink()
        self._info = None
        if left and strict:
            raise UserError(f"processes survived `env down` (even SIGKILL): {', '.join(left)}")
        return left

    def _stop_moto(self) -> list[str]:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if not self.moto_pid_file.exists():
            return []
        pid_text, _, port = self.moto_pid_file.read_text().strip().partition(" ")
        marker = f"-p {port}"
        left = terminate([int(pid_text)], marker) if pid_text.isdigit() else []
        if not left:
            self.moto_pid_file.unlink(missing_ok=True)
        return [f"moto pid {pid}" for pid in left]

    def _all_running(self, info: EnvInfo) -> bool:
        return all(component.running for component in self.status(info))

    def status(self, info: EnvInfo | None = None) -> list[ComponentStatus]:
        """What runs now, per component (an empty list when the environment is down)."""
        info = info or self.load()
        if info is None:
            return []
        rows: list[ComponentStatus] = []
        for name, region in info.regions.items():
            cluster = KwokCluster(name, self.kwok_workdir)
            live = cluster.live_pids()
            serving = bool(live) and cluster.is_serving()
            running = serving and len(live) == len(region.pids)
            rows.append(
                ComponentStatus(
                    f"cluster {name}",
                    running,
                    f"{region.server} kubeconfig {region.kubeconfig}"
                    f" ({len(live)}/{len(region.pids)} processes{', serving' if serving else ''})",
                )
            )
        moto_running = alive(info.moto_pid, f"-p {info.moto_url.rsplit(':', 1)[1]}")
        rows.append(ComponentStatus("moto", moto_running, f"{info.moto_url} pid {info.moto_pid}"))
        if info.database:
            db = info.database
            running = alive(int(db["pid"]), f"-p {db['port']}") and alive(
                int(db["tls_front_pid"]), f"--listen-port {db['tls_front_port']}"
            )
            rows.append(ComponentStatus("database", running, f"{db['dsn']} pid {db['pid']}"))
        backend = Path(info.pulumi_backend_url.removeprefix("file://"))
        rows.append(ComponentStatus("pulumi backend", backend.is_dir(), info.pulumi_backend_url))
        rows.append(ComponentStatus("git remote", (Path(info.git_remote) / "HEAD").exists(), info.git_remote))
        return rows

    def remove_state(self) -> None:
        """Delete the state folder (after `down`): Pulumi stacks, git remote, logs."""
        self.down()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()


__all__ = [
    "DEFAULT_REGIONS",
    "ComponentStatus",
    "EnvInfo",
    "LocalEnvironment",
    "RegionInfo",
    "default_state_dir",
]
