"""Checkpoint storage: atomic saves, hard-linked shares, safe deletion and clean-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from poptrain.checkpoints import BEST, CheckpointStore
from poptrain.errors import StorageError


def writer(payload: bytes, name: str = "weights.bin"):
    def write(folder: Path) -> None:
        (folder / name).write_bytes(payload)
        (folder / "sub").mkdir()
        (folder / "sub" / "opt.bin").write_bytes(payload[::-1])

    return write


def published(store: CheckpointStore) -> set[str]:
    return store.refs()


def leftovers(store: CheckpointStore) -> list[Path]:
    return [p for p in store.root.iterdir() if p.name.startswith(".tmp-")]


def test_save_publishes_a_folder_under_the_member(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    ref = store.save(3, 12, writer(b"abc"))
    assert ref.startswith("3/00000012-")
    assert store.exists(ref)
    assert store.path(ref) == store.root / ref
    assert (store.path(ref) / "weights.bin").read_bytes() == b"abc"
    assert (store.path(ref) / "sub" / "opt.bin").read_bytes() == b"cba"
    assert published(store) == {ref}
    assert leftovers(store) == []
    # Two saves at the same step never collide.
    other = store.save(3, 12, writer(b"xyz"))
    assert other != ref
    assert (store.path(ref) / "weights.bin").read_bytes() == b"abc"


def test_failed_writer_leaves_nothing(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")

    def broken(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.save(0, 1, broken)
    assert published(store) == set()
    assert leftovers(store) == []
    assert not (store.root / "0").exists() or list((store.root / "0").iterdir()) == []


def test_interrupted_writer_leaves_nothing(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")

    def interrupted(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.save(0, 1, interrupted)
    assert published(store) == set()
    assert leftovers(store) == []


def test_share_hard_links_the_same_content(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    ref = store.save(1, 8, writer(b"weights-of-1"))
    copy = store.share(ref, 2, 8)
    assert copy != ref
    assert copy.startswith("2/00000008-")
    for rel in ("weights.bin", "sub/opt.bin"):
        source, target = store.path(ref) / rel, store.path(copy) / rel
        assert target.read_bytes() == source.read_bytes()
        # Same inode: no bytes were copied.
        assert os.stat(target).st_ino == os.stat(source).st_ino
    assert published(store) == {ref, copy}
    assert leftovers(store) == []


def test_deleting_the_source_keeps_the_shared_copy(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    ref = store.save(1, 8, writer(b"keep-me"))
    copy = store.share(ref, 2, 8)
    best = store.share_as_best(ref, 8)
    assert best.startswith(f"{BEST}/")
    store.delete(ref)
    assert not store.exists(ref)
    assert (store.path(copy) / "weights.bin").read_bytes() == b"keep-me"
    assert (store.path(best) / "sub" / "opt.bin").read_bytes() == b"em-peek"
    assert published(store) == {copy, best}


def test_share_of_a_deleted_ref_raises_file_not_found(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    ref = store.save(1, 8, writer(b"gone"))
    store.delete(ref)
    with pytest.raises(FileNotFoundError):
        store.share(ref, 2, 8)
    with pytest.raises(FileNotFoundError):
        store.share("9/never-existed", 2, 8)
    assert published(store) == set()
    assert leftovers(store) == []


def test_delete_of_none_or_missing_is_harmless(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    ref = store.save(0, 1, writer(b"x"))
    store.delete(None)
    store.delete("0/missing")
    assert published(store) == {ref}


def test_collect_garbage_keeps_what_it_is_told(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    keep = {store.save(0, 4, writer(b"a")), store.share_as_best(store.save(1, 4, writer(b"b")), 4)}
    drop = {store.save(0, 2, writer(b"c")), store.save(2, 4, writer(b"d"))}
    stale = store.root / ".tmp-deadbeef"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"half")
    removed = store.collect_garbage(keep | {"3/not-there"})
    assert set(removed) >= drop
    assert not set(removed) & keep
    assert keep <= published(store)
    for ref in drop:
        assert not store.exists(ref)
    for ref in keep:
        assert store.exists(ref)
    assert leftovers(store) == []


def test_refs_are_relative_so_the_folder_can_move(tmp_path):
    store = CheckpointStore(tmp_path / "a")
    ref = store.save(0, 1, writer(b"movable"))
    (tmp_path / "a").rename(tmp_path / "b")
    moved = CheckpointStore(tmp_path / "b")
    assert (moved.path(ref) / "weights.bin").read_bytes() == b"movable"


def test_unwritable_location_raises_storage_error(tmp_path):
    # Tests run as root, which ignores permission bits: a file in the way is unwritable for all.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        CheckpointStore(blocker)
    assert str(blocker) in str(info.value)
    with pytest.raises(StorageError):
        CheckpointStore(blocker / "below")
