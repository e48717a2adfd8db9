"""Checkpoints on any fsspec file system, shared by workers on many hosts.

A location such as ``s3://bucket/run``, ``gs://bucket/run``, ``file:///nfs/run`` or
``memory://run`` (tests) holds one folder per ref, ``<owner>/<label>-<id>/``, with the
files ``Trainable.save`` wrote and a manifest, ``.poptrain-manifest.json``, that lists
them. The manifest is written last and read first: a ref exists exactly when its manifest
does. Object stores have no rename, so this is how a save is atomic there: a reader never
trusts a half-uploaded folder, and a writer that dies leaves only an unpublished folder
that :meth:`FsspecCheckpointStore.collect_garbage` removes.

The rules are those of :class:`~poptrain.checkpoints.CheckpointStore`: each ref belongs to
one member (or to ``_best``); :meth:`~FsspecCheckpointStore.share` copies server-side
(no download, no re-serialisation) and raises ``FileNotFoundError`` when the source is
gone, also while it is being copied (deletion removes the manifest first, and a copy
needs every file the manifest lists).

``Trainable.save`` and ``load`` still see a local folder: a save is written to a local
folder, then uploaded; :meth:`~FsspecCheckpointStore.path` downloads a ref into a local
cache first (refs never change, so a cached copy stays valid until the ref is deleted).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from .checkpoints import BEST
from .errors import StorageError

__all__ = ["MANIFEST", "FsspecCheckpointStore", "default_cache_dir"]

MANIFEST = ".poptrain-manifest.json"


def default_cache_dir(location: str) -> Path:
    """Where a location's checkpoints are cached on this host (``POPTRAIN_CACHE`` overrides)."""
    base = os.environ.get("POPTRAIN_CACHE")
    if base:
        root = Path(base)
    else:
        user = os.getuid() if hasattr(os, "getuid") else os.getpid()
        root = Path(tempfile.gettempdir()) / f"poptrain-cache-{user}"
    return root / hashlib.sha256(location.encode()).hexdigest()[:16]


class FsspecCheckpointStore:
    """:class:`~poptrain.checkpoints.CheckpointStorage` at an fsspec URL.

    ``storage_options`` go to fsspec (credentials, endpoint…); by default each file
    system reads its usual configuration (``AWS_*`` variables, ``~/.aws``, gcloud…).
    """

    def __init__(
        self,
        location: str,
        *,
        cache_dir: str | Path | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import fsspec
        except ImportError:
            raise StorageError(
                f"checkpoint location {location!r} needs fsspec: pip install 'poptrain[fsspec]'"
            ) from None
        try:
            fs, root = fsspec.core.url_to_fs(location, **dict(storage_options or {}))
        except (ValueError, ImportError) as exc:
            raise StorageError(f"checkpoint location {location!r} cannot be used: {exc}") from None
        self.location = location
        self.fs: Any = fs
        self.root: str = str(root).rstrip("/")
        self.cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(location)
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"checkpoint cache {str(self.cache)!r} is not writable: {exc}"
            ) from None
        probe = f"{self.root}/.probe-{uuid.uuid4().hex}"
        try:
            self._makedirs(self.root)
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except Exception as exc:
            raise StorageError(f"checkpoint location {location!r} is not writable: {exc}") from None

    # -- layout ------------------------------------------------------------------------
    def _dir(self, ref: str) -> str:
        return f"{self.root}/{ref}"

    def _manifest_path(self, ref: str) -> str:
        return f"{self._dir(ref)}/{MANIFEST}"

    @staticmethod
    def _new_ref(owner: str, label: str) -> str:
        return f"{owner}/{label}-{uuid.uuid4().hex[:12]}"

    def _makedirs(self, path: str) -> None:
        # Object stores have no folders (a no-op there); local and NFS paths need them.
        with suppress(Exception):
            self.fs.makedirs(path, exist_ok=True)

    def _manifest(self, ref: str) -> dict[str, Any]:
        try:
            data = self.fs.cat_file(self._manifest_path(ref))
        except FileNotFoundError:
            raise FileNotFoundError(ref) from None
        manifest: dict[str, Any] = json.loads(data)
        return manifest

    def _publish(self, ref: str, manifest: Mapping[str, Any]) -> None:
        """Write the manifest, last: from now on the ref exists."""
        data = json.dumps(dict(manifest), sort_keys=True).encode()
        tmp = f"{self._dir(ref)}/.manifest-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        # A rename on file systems; a copy (atomic per object) on object stores.
        self.fs.mv(tmp, self._manifest_path(ref))

    def _remove_remote(self, ref: str) -> None:
        with suppress(FileNotFoundError):
            self.fs.rm(self._dir(ref), recursive=True)

    # -- the local side -----------------------------------------------------------------
    def _local_tmp(self) -> Path:
        tmp = self.cache / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        return tmp

    def _adopt(self, folder: Path, ref: str) -> None:
        """Move a complete local copy of ``ref`` into the cache (or drop it if one is there)."""
        target = self.cache / ref
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder, target)
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)  # another process cached it first

    def _drop_cached(self, ref: str) -> None:
        cached = self.cache / ref
        doomed = self.cache / f".tmp-{uuid.uuid4().hex}"
        try:
            os.rename(cached, doomed)  # atomic: a reader sees it whole or not at all
        except OSError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    @staticmethod
    def _complete(folder: Path, manifest: Mapping[str, Any]) -> bool:
        return all(
            (folder / entry["path"]).is_file()
            and (folder / entry["path"]).stat().st_size == entry["size"]
            for entry in manifest["files"]
        )

    def _cache_copy(self, ref: str, new: str, manifest: Mapping[str, Any]) -> None:
        """Seed the cache for ``new`` from a cached ``ref`` (hard links), if there is one."""
        source = self.cache / ref
        if not source.is_dir() or (self.cache / new).exists():
            return
        tmp = self.cache / f".tmp-{uuid.uuid4().hex}"
        try:
            shutil.copytree(source, tmp, copy_function=_link_or_copy)
        except (OSError, shutil.Error):
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if self._complete(tmp, manifest):
            self._adopt(tmp, new)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- CheckpointStorage ---------------------------------------------------------------
    def path(self, ref: str) -> Path:
        """A local folder with ``ref``'s files: cached, or downloaded now.

        A ref that does not exist gives a path that does not exist either (as on disk).
        """
        local = self.cache / ref
        if local.is_dir():
            return local
        try:
            manifest = self._manifest(ref)
        except FileNotFoundError:
            return local
        tmp = self._local_tmp()
        try:
            for name in manifest.get("dirs", []):
                (tmp / name).mkdir(parents=True, exist_ok=True)
            for entry in manifest["files"]:
                target = tmp / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{self._dir(ref)}/{entry['path']}", str(target))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._adopt(tmp, ref)
        return local

    def exists(self, ref: str) -> bool:
        return bool(self.fs.exists(self._manifest_path(ref)))

    def save(self, member: int, step: int, writer: Callable[[Path], None]) -> str:
        """Run ``writer(folder)`` on a local folder, upload it, then publish its manifest."""
        ref = self._new_ref(str(member), f"{step:08d}")
        local = self._local_tmp()
        try:
            writer(local)
            files: list[dict[str, Any]] = []
            dirs: list[str] = []
            for item in sorted(local.rglob("*")):
                name = item.relative_to(local).as_posix()
                if item.is_dir():
                    dirs.append(name)
                elif item.is_file():
                    files.append({"path": name, "size": item.stat().st_size})
            self._makedirs(self._dir(ref))
            for name in dirs:
                self._makedirs(f"{self._dir(ref)}/{name}")
            for entry in files:
                self.fs.put_file(str(local / entry["path"]), f"{self._dir(ref)}/{entry['path']}")
            self._publish(ref, {"version": 1, "files": files, "dirs": dirs})
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            with suppress(Exception):
                self._remove_remote(ref)
            raise
        self._adopt(local, ref)
        return ref

    def share(self, ref: str, owner: int | str, step: int) -> str:
        """A copy of ``ref`` owned by ``owner``, copied on the server side.

        Raises ``FileNotFoundError`` if ``ref`` was deleted, also while it was copied.
        """
        manifest = self._manifest(ref)
        new = self._new_ref(str(owner), f"{step:08d}")
        try:
            self._makedirs(self._dir(new))
            for name in manifest.get("dirs", []):
                self._makedirs(f"{self._dir(new)}/{name}")
            for entry in manifest["files"]:
                self.fs.cp_file(
                    f"{self._dir(ref)}/{entry['path']}", f"{self._dir(new)}/{entry['path']}"
                )
            self._publish(new, manifest)
        except BaseException as exc:
            with suppress(Exception):
                self._remove_remote(new)
            if isinstance(exc, Exception) and (
                isinstance(exc, FileNotFoundError) or not self.exists(ref)
            ):
                raise FileNotFoundError(ref) from None
            raise
        self._cache_copy(ref, new, manifest)
        return new

    def share_as_best(self, ref: str, step: int) -> str:
        return self.share(ref, BEST, step)

    def delete(self, ref: str | None) -> None:
        if not ref:
            return
        with suppress(FileNotFoundError):
            self.fs.rm_file(self._manifest_path(ref))  # unpublished from here on
        self._remove_remote(ref)
        self._drop_cached(ref)

    def refs(self) -> set[str]:
        """Every published ref (folders without a manifest excluded)."""
        found: set[str] = set()
        prefix, suffix = f"{self.root}/", f"/{MANIFEST}"
        for path in self.fs.glob(f"{self.root}/*/*/{MANIFEST}"):
            path = str(path)
            if path.startswith(prefix) and path.endswith(suffix):
                found.add(path[len(prefix) : -len(suffix)])
        return found

    def collect_garbage(self, keep: set[str]) -> list[str]:
        """Delete published refs not in ``keep``, unpublished folders and stale cache entries.

        Like on disk, call it while nobody writes: a save in progress is unpublished.
        """
        published = self.refs()
        removed = sorted(published - keep)
        for ref in removed:
            self.delete(ref)
        prefix = f"{self.root}/"
        orphans: set[str] = set()
        for path in self.fs.find(self.root):
            parts = str(path)[len(prefix) :].split("/")
            if str(path).startswith(prefix) and len(parts) >= 3:
                ref = f"{parts[0]}/{parts[1]}"
                if ref not in published:
                    orphans.add(ref)
        for ref in orphans:
            self._remove_remote(ref)
        for owner in self.cache.iterdir():
            if owner.name.startswith(".tmp-"):
                shutil.rmtree(owner, ignore_errors=True)
            elif owner.is_dir():
                for entry in owner.iterdir():
                    if f"{owner.name}/{entry.name}" not in keep:
                        self._drop_cached(f"{owner.name}/{entry.name}")
        return removed


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
