"""Checkpoint storage at a path or an fsspec URL: the same rules everywhere.

``memory://`` stands for an object store (no folders, no rename); ``file://`` is a local
folder through fsspec, as an NFS mount would be; a plain path is the local store.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

import poptrain
from poptrain.checkpoints import CheckpointStorage, CheckpointStore, open_checkpoints
from poptrain.demos.toy import TOY_SPACE, ToyTrainable, toy_initial_hparams
from poptrain.errors import StorageError
from poptrain.remote_checkpoints import MANIFEST, FsspecCheckpointStore
from poptrain.strategies import EverySteps, GaussianNoise, Truncation

pytest.importorskip("fsspec")

KINDS = ["path", "file", "memory"]


def location(kind: str, tmp_path: Path) -> str:
    if kind == "path":
        return str(tmp_path / "ckpt")
    if kind == "file":
        return f"file://{tmp_path}/ckpt"
    return f"memory://poptrain-tests/{uuid.uuid4().hex}"


@pytest.fixture(params=KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> CheckpointStorage:
    opened = open_checkpoints(location(request.param, tmp_path))
    if isinstance(opened, FsspecCheckpointStore):
        opened.cache = tmp_path / "cache"  # a cache of its own per test
    return opened


def writer(files: dict[str, bytes]):
    def write(folder: Path) -> None:
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)

    return write


def content(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


FILES = {"weights.bin": b"\x00\x01" * 1000, "sub/state.json": b'{"step": 4}'}


def test_open_checkpoints_picks_the_store_by_location(tmp_path):
    assert isinstance(open_checkpoints(tmp_path / "a"), CheckpointStore)
    assert isinstance(open_checkpoints(str(tmp_path / "b")), CheckpointStore)
    assert isinstance(open_checkpoints(f"file://{tmp_path}/c"), FsspecCheckpointStore)
    remote = open_checkpoints("memory://poptrain-tests/d")
    assert isinstance(remote, FsspecCheckpointStore)
    assert remote.location == "memory://poptrain-tests/d"


def test_save_path_share_delete(storage: CheckpointStorage):
    ref = storage.save(3, 8, writer(FILES))
    assert ref.startswith("3/00000008-") and storage.exists(ref)
    assert content(storage.path(ref)) == FILES
    copy = storage.share(ref, 5, 12)
    best = storage.share_as_best(ref, 8)
    assert copy.startswith("5/00000012-") and best.startswith("_best/")
    assert storage.refs() == {ref, copy, best}
    storage.delete(ref)
    assert not storage.exists(ref) and not storage.path(ref).exists()
    assert content(storage.path(copy)) == FILES  # the copy does not depend on its source
    with pytest.raises(FileNotFoundError):
        storage.share(ref, 6, 1)
    storage.delete(ref)  # deleting twice is harmless
    storage.delete(None)
    assert storage.refs() == {copy, best}


def test_a_failed_save_leaves_nothing(storage: CheckpointStorage):
    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        storage.save(1, 1, broken)
    assert storage.refs() == set()
    assert storage.collect_garbage(set()) == []


def test_collect_garbage_keeps_what_it_is_told(storage: CheckpointStorage):
    keep = {storage.save(m, 1, writer(FILES)) for m in range(2)}
    gone = storage.save(2, 1, writer(FILES))
    assert storage.collect_garbage(keep) == [gone]
    assert storage.refs() == keep
    for ref in keep:
        assert content(storage.path(ref)) == FILES


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_a_ref_without_its_manifest_does_not_exist(kind: str, tmp_path: Path):
    store = FsspecCheckpointStore(location(kind, tmp_path), cache_dir=tmp_path / "cache")
    # An upload that died before its manifest: files, but no manifest.
    orphan = "4/00000002-deadbeef0000"
    store.fs.makedirs(f"{store.root}/{orphan}", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/{orphan}/weights.bin", b"partial")
    assert not store.exists(orphan)
    assert orphan not in store.refs()
    assert not store.path(orphan).exists()
    with pytest.raises(FileNotFoundError):
        store.share(orphan, 5, 1)
    kept = store.save(1, 1, writer(FILES))
    store.collect_garbage({kept})
    assert not store.fs.exists(f"{store.root}/{orphan}/weights.bin")
    assert store.fs.exists(f"{store.root}/{kept}/{MANIFEST}")


def test_another_host_downloads_what_one_host_saved(tmp_path: Path):
    where = f"file://{tmp_path}/shared"
    one = FsspecCheckpointStore(where, cache_dir=tmp_path / "host-1")
    two = FsspecCheckpointStore(where, cache_dir=tmp_path / "host-2")
    ref = one.save(0, 4, writer(FILES))
    assert not (tmp_path / "host-2" / ref).exists()
    assert content(two.path(ref)) == FILES
    assert (tmp_path / "host-2" / ref).is_dir()  # cached: the next load reads it locally
    copy = two.share(ref, 1, 4)
    assert content(one.path(copy)) == FILES


def test_share_during_delete_never_yields_a_partial_copy(storage: CheckpointStorage):
    """A member exploiting a checkpoint that is being replaced gets all of it or an error."""
    many = {f"part-{i:03d}.bin": bytes([i]) * 2000 for i in range(60)}
    for _round in range(15):
        ref = storage.save(0, 1, writer(many))
        copies: list[str] = []
        missing: list[bool] = []

        def share(ref: str, copies: list[str], missing: list[bool]) -> None:
            try:
                copies.append(storage.share(ref, 1, 1))
            except FileNotFoundError:
                missing.append(True)

        thread = threading.Thread(target=share, args=(ref, copies, missing))
        thread.start()
        storage.delete(ref)
        thread.join()
        assert len(copies) + len(missing) == 1
        for copy in copies:
            assert content(storage.path(copy)) == many
            storage.delete(copy)


def test_unusable_locations_are_refused_before_anything_runs(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="not writable"):
        open_checkpoints(f"file://{blocker}/below")
    with pytest.raises(StorageError, match="not writable"):
        open_checkpoints(str(blocker / "below"))
    with pytest.raises(StorageError, match="cannot be used"):
        open_checkpoints("no-such-protocol://bucket/x")


def _toy_run(tmp_path: Path, checkpoints: str | None, executor: str) -> poptrain.Result:
    return poptrain.run(
        ToyTrainable,
        space=TOY_SPACE,
        metric="q",
        mode="max",
        population_size=2,
        max_steps=60,
        ready=EverySteps(4),
        seed=1,
        initial_hparams=toy_initial_hparams(),
        trainable_options={"lr": 0.02},
        synchronous=True,
        exploit=Truncation(0.5),
        explore=GaussianNoise(0.1),
        run_dir=tmp_path / f"run-{executor}-{uuid.uuid4().hex[:6]}",
        checkpoints=checkpoints,
        executor=executor,
        workers=None if executor == "inline" else 2,
    )


def test_runs_with_remote_checkpoints_match_a_local_run(tmp_path: Path):
    local = _toy_run(tmp_path, None, "inline")
    # memory:// lives in one process: the inline executor; file:// is shared by processes.
    in_memory = _toy_run(tmp_path, "memory://poptrain-tests/run", "inline")
    on_files = _toy_run(tmp_path, f"file://{tmp_path}/shared-ckpt", "local")
    assert local.best is not None and in_memory.best is not None and on_files.best is not None
    assert local.status == in_memory.status == on_files.status == "finished"
    assert in_memory.best.score == pytest.approx(local.best.score, abs=1e-12)
    assert on_files.best.score == pytest.approx(local.best.score, abs=1e-12)
    assert on_files.best.load().evaluate()["q"] == pytest.approx(on_files.best.score)
