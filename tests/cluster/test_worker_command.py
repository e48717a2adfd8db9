"""``poptrain worker`` processes joining a run in PostgreSQL, started separately.

Real processes, a real server: a run is created without workers, workers join it, one is
killed (its member goes to another after the lease), a long step keeps its member
(heartbeat), the database restarts mid-run, and bad input fails before training.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cluster_procs
import pytest

import poptrain
from poptrain.checkpoints import open_checkpoints
from poptrain.config import RunConfig
from poptrain.demos.toy import ToyTrainable
from poptrain.results import Result
from poptrain.store import MemberStatus, SQLStore
from servers import PASSWORD_ROLE, PostgresServer, free_port, subprocess_env

pytestmark = pytest.mark.postgres


def toy_config(trainable: str, **overrides: Any) -> RunConfig:
    return cluster_procs.toy_config(trainable, **{"seed": 3, **overrides})


def write_config(path: Path, config: RunConfig) -> Path:
    path.write_text(json.dumps(config.to_spec()))
    return path


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poptrain.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
    )


#: Every process a test started; whatever is still running at its end is killed.
_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_stray_processes() -> Iterator[None]:
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait()


def start_worker(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "poptrain.cli", "worker", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
        )
    _STARTED.append(process)
    return process


def create_run(tmp_path: Path, url: str, config: RunConfig, name: str) -> dict[str, Any]:
    created = cli(
        "run", str(write_config(tmp_path / f"{name}.json", config)),
        "--storage", url, "--checkpoints", str(tmp_path / "shared-ckpt"),
        "--run-dir", str(tmp_path / name), "--workers", "0", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    return dict(json.loads(created.stdout))


def wait_for(predicate: Any, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    try:
        assert process.wait(timeout) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def check_complete(store: SQLStore, run: str, max_steps: int) -> None:
    """Every member finished its budget, and every step's evaluation is in the store."""
    for member in store.members(run):
        assert member.status == MemberStatus.FINISHED and member.step == max_steps
        steps = {e.step for e in store.evaluations(run, member.member) if e.score is not None}
        assert steps == set(range(1, max_steps + 1)), (member.member, sorted(steps))


def test_two_workers_serve_a_run_created_without_workers(tmp_path: Path, postgres_url: str):
    config = toy_config("cluster_procs:SlowToy", trainable_options={"lr": 0.02, "sleep": 0.05})
    created = create_run(tmp_path, postgres_url, config, "r2w")
    assert created["status"] == "created"
    assert created["worker"].startswith("poptrain worker --storage ")
    name = created["run"]
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [start_worker("--storage", postgres_url, "--run", name, log=log) for log in logs]
    for process, log in zip(workers, logs, strict=True):
        finish(process, log)
    store = SQLStore(postgres_url)
    try:
        record = store.get_run(name)
        assert record is not None and record.status == "finished"
        check_complete(store, name, config.max_steps)
        owners = {e.owner for e in store.evaluations(name)}
        assert len(owners) == 2 and all(o and o.startswith("worker-") for o in owners)
        result = Result.load(store, name, open_checkpoints(str(tmp_path / "shared-ckpt")))
    finally:
        store.close()
    # As good as a local run: the same toy on one machine reaches the same best state.
    local = poptrain.run(
        toy_config("poptrain.demos.toy:ToyTrainable"),
        run_dir=tmp_path / "local",
        executor="inline",
    )
    assert result.best is not None and local.best is not None
    assert result.best.score == pytest.approx(local.best.score, abs=1e-12)
    assert result.best.score > 1.0  # fixed hyperparameters top out at Q = 0.39
    assert result.best.load().evaluate()["q"] == pytest.approx(result.best.score)


def test_a_dead_workers_member_is_reclaimed_after_its_lease(tmp_path: Path, postgres_url: str):
    config = toy_config(
        "cluster_procs:SlowToy",
        synchronous=False,
        max_steps=24,
        trainable_options={"lr": 0.02, "sleep": 0.1},
    )
    name = create_run(tmp_path, postgres_url, config, "rdead")["run"]
    store = SQLStore(postgres_url)
    try:
        doomed = start_worker(
            "--storage", postgres_url, "--run", name, "--owner", "worker-doomed",
            "--lease-seconds", "3", log=tmp_path / "doomed.log",
        )  # fmt: skip

        def holds_a_checkpointed_member() -> bool:
            return any(
                m.owner == "worker-doomed"
                and m.checkpoint is not None
                and m.step > m.checkpoint_step
                for m in store.members(name)
            )

        wait_for(holds_a_checkpointed_member, what="the first worker to hold a member")
        doomed.send_signal(signal.SIGKILL)  # no clean-up: only the lease can free its member
        doomed.wait()
        held = next(m for m in store.members(name) if m.owner == "worker-doomed")
        log = tmp_path / "rescuer.log"
        rescuer = start_worker(
            "--storage", postgres_url, "--run", name, "--lease-seconds", "3", log=log
        )
        finish(rescuer, log)
        check_complete(store, name, config.max_steps)
        rollbacks = [e for e in store.events(name, held.member) if e.kind == "rollback"]
        assert rollbacks and rollbacks[0].new_step == held.checkpoint_step
        assert store.get_run(name).status == "finished"
    finally:
        store.close()


def test_a_step_longer_than_the_lease_keeps_its_member(tmp_path: Path, postgres_url: str):
    config = toy_config(
        "cluster_procs:SlowToy",
        synchronous=False,
        max_steps=3,
        trainable_options={"lr": 0.02, "sleep": 2.0},
    )
    name = create_run(tmp_path, postgres_url, config, "rlong")["run"]
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [
        start_worker("--storage", postgres_url, "--run", name, "--lease-seconds", "1", log=log)
        for log in logs
    ]
    for process, log in zip(workers, logs, strict=True):
        finish(process, log, timeout=120)  # without heartbeats, they steal from each other forever
    store = SQLStore(postgres_url)
    try:
        check_complete(store, name, config.max_steps)
        assert not [e for e in store.events(name) if e.kind == "rollback"]
        for member in range(config.population_size):
            owners = {e.owner for e in store.evaluations(name, member)}
            assert len(owners) == 1  # nobody took it over mid-step
    finally:
        store.close()


def test_workers_ride_out_a_database_restart(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
):
    config = toy_config(
        "cluster_procs:SlowToy",
        synchronous=False,
        population_size=4,
        initial_hparams=None,
        max_steps=40,
        trainable_options={"lr": 0.02, "sleep": 0.05},
    )
    path = write_config(tmp_path / "restart.json", config)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        running = subprocess.Popen(
            [
                sys.executable, "-m", "poptrain.cli", "run", str(path), "--storage", postgres_url,
                "--run-dir", str(tmp_path / "rrestart"), "--workers", "2", "--json", "--quiet",
            ],
            stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(),
        )  # fmt: skip
    _STARTED.append(running)
    store = SQLStore(postgres_url)
    try:
        wait_for(lambda: len(store.list_runs()) == 1, what="the run to be created")
        name = store.list_runs()[0].name
        wait_for(lambda: len(store.evaluations(name)) >= 20, what="training to start")
        assert running.poll() is None, log.read_text()
        postgres_server.restart()
        finish(running, log)
        check_complete(store, name, config.max_steps)
        assert store.get_run(name).status == "finished"
        assert not [e for e in store.events(name) if e.kind == "failure"]
    finally:
        store.close()


def test_bad_input_fails_before_training(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
):
    nowhere = f"postgresql+psycopg://pt@127.0.0.1:{free_port()}/db"
    unreachable = cli("worker", "--storage", nowhere, "--run", "r", timeout=60)
    assert unreachable.returncode == 2
    assert "cannot open the store" in unreachable.stderr and "Traceback" not in unreachable.stderr

    database = postgres_url.rsplit("/", 1)[1]
    wrong = postgres_server.url(database, user=PASSWORD_ROLE, password="wrong-secret")
    refused = cli("worker", "--storage", wrong, "--run", "r", timeout=60)
    assert refused.returncode == 2
    assert "password authentication failed" in refused.stderr
    assert "wrong-secret" not in refused.stderr and "Traceback" not in refused.stderr

    missing = cli("worker", "--storage", postgres_url, "--run", "no-such-run", timeout=60)
    assert missing.returncode == 2 and "no such run" in missing.stderr

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = write_config(tmp_path / "c.json", toy_config("poptrain.demos.toy:ToyTrainable"))
    for location in (str(blocker / "ckpt"), f"file://{blocker}/ckpt"):
        unwritable = cli(
            "run", str(config), "--storage", postgres_url, "--checkpoints", location,
            "--run-dir", str(tmp_path / "never"), timeout=60,
        )  # fmt: skip
        assert unwritable.returncode == 2, unwritable.stderr
        assert "not writable" in unwritable.stderr and "Traceback" not in unwritable.stderr
    store = SQLStore(postgres_url)
    try:
        assert store.list_runs() == []  # nothing was created, nothing trained
    finally:
        store.close()


def test_toy_worker_class_is_the_toy():
    """SlowToy only adds a sleep: the comparisons above rely on the same arithmetic."""
    from cluster_procs import SlowToy

    assert issubclass(SlowToy, ToyTrainable)
