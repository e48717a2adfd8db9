"""Checkpoint storage in the run directory.

A checkpoint is a folder written by ``Trainable.save``. Writes are atomic: the folder is
filled under a temporary name, every file is fsync'ed, then the folder is renamed into
place. Refs are paths relative to the checkpoint root, so a run directory can be moved.

Exploit never re-serialises weights: :meth:`CheckpointStore.share` gives the exploiting
member its own hard-linked copy of the source's folder (a plain copy where the file
system has no hard links). Each name is owned by exactly one member (or by the run's
best-ever record), so deleting a member's superseded checkpoint can never remove data
that another member, or a pending exploit, still refers to. A deleted folder is first
renamed away, so a copy made at that moment fails (and is retried) instead of being
silently incomplete.

:func:`open_checkpoints` also opens fsspec URLs (``s3://``, ``gs://``, ``memory://``…) as
:class:`~poptrain.remote_checkpoints.FsspecCheckpointStore`, with the same rules; both
satisfy :class:`CheckpointStorage`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import StorageError

__all__ = ["CheckpointStorage", "CheckpointStore", "open_checkpoints"]

BEST = "_best"


def _fsync_tree(root: Path) -> None:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@runtime_checkable
class CheckpointStorage(Protocol):
    """Where a run's checkpoints live; refs are ``<owner>/<label>-<id>`` strings."""

    #: What a worker, on this host or another, passes to :func:`open_checkpoints`.
    location: str

    def path(self, ref: str) -> Path:
        """A local folder holding ``ref``'s files, for ``Trainable.load``."""
        ...

    def exists(self, ref: str) -> bool: ...

    def save(self, member: int, step: int, writer: Callable[[Path], None]) -> str:
        """Run ``writer(folder)`` on an empty local folder and publish it atomically."""
        ...

    def share(self, ref: str, owner: int | str, step: int) -> str:
        """A copy of ``ref`` owned by ``owner``; ``FileNotFoundError`` if ``ref`` is gone."""
        ...

    def share_as_best(self, ref: str, step: int) -> str: ...

    def delete(self, ref: str | None) -> None: ...

    def refs(self) -> set[str]: ...

    def collect_garbage(self, keep: set[str]) -> list[str]: ...


def open_checkpoints(location: str | Path) -> CheckpointStorage:
    """The checkpoint storage at ``location``: a folder, or an fsspec URL (``scheme://…``).

    Raises :class:`~poptrain.errors.StorageError` if it cannot be written.
    """
    if isinstance(location, str) and "://" in location:
        from .remote_checkpoints import FsspecCheckpointStore  # fsspec is an optional extra

        return FsspecCheckpointStore(location)
    return CheckpointStore(location)


class CheckpointStore:
    """Checkpoint folders under ``root``: ``<member>/<step>-<id>`` and ``_best/<id>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.location = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"checkpoint location {str(root)!r} is not writable: {exc}"
            ) from None

    def path(self, ref: str) -> Path:
        return self.root / ref

    def exists(self, ref: str) -> bool:
        return self.path(ref).is_dir()

    def _new_ref(self, owner: str, label: str) -> str:
        return f"{owner}/{label}-{uuid.uuid4().hex[:12]}"

    def _commit(self, tmp: Path, ref: str) -> str:
        _fsync_tree(tmp)
        final = self.path(ref)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, final)
        _fsync_dir(final.parent)
        return ref

    def _tmp(self) -> Path:
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        return tmp

    def save(self, member: int, step: int, writer: Callable[[Path], None]) -> str:
        """Run ``writer(folder)`` and publish the folder atomically; return its ref."""
        tmp = self._tmp()
        try:
            writer(tmp)
            return self._commit(tmp, self._new_ref(str(member), f"{step:08d}"))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def share(self, ref: str, owner: int | str, step: int) -> str:
        """A new ref for ``owner`` with the same content as ``ref``, without re-serialising.

        Raises ``FileNotFoundError`` if ``ref`` was deleted meanwhile (the caller picks again).
        """
        source = self.path(ref)
        if not source.is_dir():
            raise FileNotFoundError(ref)
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            shutil.copytree(source, tmp, copy_function=_link_or_copy)
            return self._commit(tmp, self._new_ref(str(owner), f"{step:08d}"))
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, (OSError, shutil.Error)) and not source.is_dir():
                raise FileNotFoundError(ref) from None  # deleted while it was being copied
            raise

    def share_as_best(self, ref: str, step: int) -> str:
        return self.share(ref, BEST, step)

    def delete(self, ref: str | None) -> None:
        if not ref:
            return
        # Renamed away first (atomic), so a concurrent share() sees all of it or nothing.
        doomed = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            os.rename(self.path(ref), doomed)
        except FileNotFoundError:
            return
        except OSError:
            doomed = self.path(ref)
        shutil.rmtree(doomed, ignore_errors=True)

    def refs(self) -> set[str]:
        """Every published ref (temporary folders excluded)."""
        found: set[str] = set()
        for owner in self.root.iterdir():
            if owner.is_dir() and not owner.name.startswith(".tmp-"):
                found.update(f"{owner.name}/{entry.name}" for entry in owner.iterdir())
        return found

    def collect_garbage(self, keep: set[str]) -> list[str]:
        """Delete published refs not in ``keep`` and stale temporary folders; return what went."""
        removed = sorted(self.refs() - keep)
        for ref in removed:
            self.delete(ref)
        for tmp in self.root.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        return removed
