"""Real servers the tests start themselves: a PostgreSQL server and a two-node Ray cluster.

Nothing is started by hand (not by CI either). Both listen on loopback only, on free
ports, with their files in a temporary folder that is removed afterwards. PostgreSQL
refuses to run as root: as root, the server runs as an unprivileged system user
(``postgres`` if it exists, else ``nobody``); trust authentication is enabled for
127.0.0.1 only, plus one password role (``pt_pw``) for the wrong-password tests.
"""

from __future__ import annotations

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
import uuid
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent
SRC_DIR = TESTS_DIR.parent / "src"

#: The role with a password (the others log in by trust on loopback).
PASSWORD_ROLE = "pt_pw"
PASSWORD = "right-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: ``$POPTRAIN_PG_BIN``, Debian's layout, or ``PATH``."""
    candidates = []
    if os.environ.get("POPTRAIN_PG_BIN"):
        candidates.append(Path(os.environ["POPTRAIN_PG_BIN"]))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The account the server runs as when the tests run as root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("POPTRAIN_PG_USER"), "postgres", "nobody"):
        if not name:
            continue
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, but there is neither a 'postgres' nor a 'nobody' user")


class PostgresServer:
    """A throw-away PostgreSQL server: ``start()``, ``database()``, ``restart()``, ``stop()``."""

    superuser = "pt"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Not under pytest's tmp folder: that one is private to root (mode 0700).
        self.root = Path(tempfile.mkdtemp(prefix="poptrain-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.account = _unprivileged_user()
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)

    # -- processes -------------------------------------------------------------------
    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        options: dict[str, Any] = {}
        if self.account is not None:
            options = {
                "user": self.account.pw_uid,
                "group": self.account.pw_gid,
                "extra_groups": [],
            }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        result = subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            **options,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({result.returncode}): {result.stdout}\n{result.stderr}\n"
                f"{self.log.read_text() if self.log.exists() else ''}"
            )
        return result

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self.account is not None:
            os.chown(path, self.account.pw_uid, self.account.pw_gid)

    def start(self) -> PostgresServer:
        self._run(
            "initdb", "-D", str(self.data), "-U", self.superuser, "-A", "trust",
            "--no-sync", "--no-locale", "-E", "UTF8",
        )  # fmt: skip
        self._write(
            self.data / "pg_hba.conf",
            "local all all trust\n"
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 300\n"
                # Throw-away data: no durability needed, and the tests run faster.
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        self._pg_ctl("start")
        self.execute(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        return self

    def _pg_ctl(self, action: str, *extra: str) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", action, *extra
        )

    def restart(self) -> None:
        """A real restart: every connection is cut, as when a database server is rebooted."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ---------------------------------------------------------------------
    def url(
        self, database: str = "postgres", *, user: str | None = None, password: str | None = None
    ) -> str:
        auth = user or self.superuser
        if password is not None:
            auth += f":{password}"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        dsn = f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f"CREATE DATABASE {name}")
        self.execute(f"GRANT ALL ON DATABASE {name} TO {PASSWORD_ROLE}")
        self.execute(f"GRANT ALL ON SCHEMA public TO {PASSWORD_ROLE}", database=name)
        return self.url(name)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses that import poptrain and the tests' helpers."""
    env = dict(os.environ)
    parts = [str(TESTS_DIR), str(TESTS_DIR / "cluster"), str(SRC_DIR)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(extra)
    return env


class RayCluster:
    """A real Ray cluster of separate nodes on this machine, started with ``ray start``.

    Each node is a ``ray start --block`` process in its own session; stopping sends it
    SIGTERM (it stops the node's processes) and then kills what is left of that session,
    and of nothing else.
    """

    def __init__(self, nodes: list[dict[str, float]], *, cpus_per_node: int = 1) -> None:
        self.nodes = nodes
        self.cpus = cpus_per_node
        # Short: Ray's unix socket paths must stay under about 100 characters.
        self.temp = Path(tempfile.mkdtemp(prefix="ptray-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def _start_node(self, index: int, resources: dict[str, float]) -> None:
        import json

        log = self.temp / f"node-{index}.log"
        argv = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--block",
            f"--num-cpus={self.cpus}", "--num-gpus=0",
            f"--resources={json.dumps(resources)}",
            "--object-store-memory=100000000",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ]  # fmt: skip
        if index == 0:
            argv += [
                "--head", f"--port={self.port}", "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp}",
                "--node-ip-address=127.0.0.1",
            ]  # fmt: skip
        else:
            argv += [f"--address={self.address}", "--node-ip-address=127.0.0.1"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=subprocess_env(),
            )
        self.processes.append(process)
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {index} did not start:\n{log.read_text()}")
            time.sleep(0.5)

    def start(self) -> RayCluster:
        try:
            for index, resources in enumerate(self.nodes):
                self._start_node(index, resources)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            # The node's processes share the session (and group) its `ray start` led.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self.processes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)
