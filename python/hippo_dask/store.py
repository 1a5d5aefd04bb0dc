"""Where lineage lives: a directory or any fsspec URL.

Layout::

    <store>/fragments/<node id>/<checksum>.hippo   group memberships, written by the
                                                   tasks that compute them (workers)
    <store>/runs/<run id>/started.json             written when a compute starts
    <store>/runs/<run id>/result-<part>.hippo      result slot arrays, one per partition
    <store>/runs/<run id>/manifest.json            written last and atomically: the
                                                   operator DAG, column mappings, sources,
                                                   and every fragment with its checksum

A run without a manifest is incomplete (killed, or still running) and never
answers queries. Every binary fragment is a checksummed container made by the
Rust core; a damaged one raises :class:`~hippo_dask.errors.CorruptRunError`
naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import posixpath
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Mapping

import fsspec

from . import _core
from .errors import CorruptRunError, DecodeError, IncompleteRunError, RunNotFoundError, StoreError, StoreWriteError

#: Written into every manifest. 2: group ids may be derived from a source file (a fragment then
#: lacks them; see ``hippo_dask.partition.derive_key``), which a reader of 1 would call corrupt.
FORMAT_VERSION = 2
#: Manifest versions this hippo_dask reads (1: every group id stored).
READ_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
#: A manifest holds the operator DAG and fragment names, never per-row data: far below this.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
STARTED = "started.json"
#: Written instead of a manifest when a user function failed (see hippo_dask.debug).
FAILED = "failed.json"
LEASE = "lease.json"
#: How often a computing run rewrites its lease file (what keeps Store.gc off it).
LEASE_SECONDS = 30.0


def _normalise(url: str | os.PathLike[str]) -> str:
    url = os.fspath(url)
    if "://" not in url:  # a local path: absolute, so worker processes agree on it
        url = os.path.abspath(os.path.expanduser(url))
    return url.rstrip("/") or "/"


#: What a run id, node id or file name inside a store may be: one path component, never "." or
#: "..", no separator, so nothing a caller or a manifest names can reach outside the store.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def safe_name(name: Any, what: str) -> str:
    """``name`` if it is one plain path component (see ``_SAFE_NAME``); a :class:`StoreError` otherwise."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise StoreError(f"{what} {name!r} is not a name inside a store (letters, digits, '_', '-' and '.', at most "
                         "200, not starting with '.' and without '..'): a mistyped id, or a damaged or crafted "
                         "manifest; nothing outside the store is read or written")
    return name


class Location(str):
    """A URL inside a store that carries the store's fsspec ``storage_options`` wherever it goes.

    The store reaches Dask workers as URLs (a fragment folder, a result file's path)
    pickled into tasks; a plain string would open the store there with default options
    (no endpoint, no keys). A ``Location`` is a ``str`` (it equals, hashes, prints and
    tokenizes as the URL, so the options never show in a message or a Dask key) that
    pickles with its options; :func:`url_to_fs` opens it with them, and ``_join`` keeps
    them. :class:`Store` builds every path it hands out this way.
    """

    storage_options: dict[str, Any]

    def __new__(cls, url: str, storage_options: Mapping[str, Any] | None = None) -> Location:
        self = super().__new__(cls, url)
        self.storage_options = dict(storage_options or {})
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Location, (str(self), self.storage_options))


def url_to_fs(url: str) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs(url)``, with the store's options when ``url`` is a :class:`Location`."""
    return fsspec.core.url_to_fs(url, **getattr(url, "storage_options", {}))


def _join(base: str, *parts: str) -> str:
    joined = posixpath.join(base, *parts) if "://" in base else os.path.join(base, *parts)
    return Location(joined, base.storage_options) if isinstance(base, Location) else joined


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` to ``url`` atomically (temporary name, then rename).

    An OS error on the way (disk full, no permission, storage gone) raises a
    :class:`~hippo_dask.errors.StoreWriteError` naming ``url`` and the error: ``url`` is left as
    it was and the temporary file is removed (best effort), so a failed manifest write
    leaves the run uncommitted, never half-written.
    """
    fs, path = url_to_fs(url)
    parent = posixpath.dirname(path)
    tmp = f"{path}.tmp-{secrets.token_hex(6)}"
    try:
        fs.makedirs(parent, exist_ok=True)
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    except storage_errors() as exc:
        with contextlib.suppress(*storage_errors()):  # a partial temporary file only takes space
            if fs.exists(tmp):
                fs.rm(tmp)
        raise _write_error(url, exc) from exc


def storage_errors() -> tuple[type[BaseException], ...]:
    """What a filesystem raises when its storage fails: ``OSError``, and the errors of object-store
    clients that are not OSErrors (s3fs lets botocore's connection and credential errors, e.g.
    ``EndpointConnectionError``, through as they are; aiohttp's ``ClientError``). Only clients
    already imported are asked for theirs: one never imported raised nothing."""
    errors: list[type[BaseException]] = [OSError]
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None:
        errors.append(botocore.BotoCoreError)
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is not None:
        errors.append(aiohttp.ClientError)
    return tuple(errors)


def _write_error(url: str, exc: BaseException) -> StoreWriteError:
    """The :class:`StoreWriteError` for ``exc``, raised writing ``url``: what, where, and what it means for the run."""
    number = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    code = errno.errorcode.get(number, "") if number is not None else ""
    reason = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__) if isinstance(exc, OSError) \
        else f"{type(exc).__name__}: {exc}"  # an object store's client error (the storage unreachable, ...)
    message = (f"the lineage store could not be written: {url}: {reason}"
               f"{f' ({code})' if code else ''}. The run being written is not committed (it answers no "
               "queries; runs committed before are untouched); free space or fix access, then compute again")
    # OSError(None, message) would print as "[Errno None] ..."
    return StoreWriteError(number, message) if number is not None else StoreWriteError(message)


def write_fragment(directory: str, data: bytes) -> str:
    """Store ``data`` under ``directory``, named by its checksum; idempotent."""
    name = f"{_core.checksum(data):016x}.hippo"
    url = _join(directory, name)
    fs, path = url_to_fs(url)
    try:
        exists = fs.exists(path)
    except storage_errors() as exc:
        raise _write_error(url, exc) from exc
    if not exists:
        write_bytes(url, data)
    return name


def read_bytes(url: str) -> bytes:
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as f:
        return f.read()


@dataclass(frozen=True)
class RunInfo:
    """One run in a store: its id, when it started, and whether it committed."""

    run_id: str
    created: float
    complete: bool
    failed: bool = False


class Store:
    """A lineage store at a directory or fsspec URL.

    Parameters
    ----------
    url : str or path
        Local directory (created on first write) or any fsspec URL. An existing
        file is refused (:class:`~hippo_dask.errors.StoreError`).
    **storage_options
        Options for the URL's fsspec filesystem (for ``s3://``, s3fs's: ``key``,
        ``secret``, ``client_kwargs={"endpoint_url": ...}``, ...). Every read and
        write of the store uses them: the driver's, and the Dask workers' that write
        fragments (they travel with the paths the tasks are given). Without them,
        the filesystem's defaults apply (s3fs reads ``AWS_ACCESS_KEY_ID``,
        ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` ... from the environment of
        each process). They are never shown in a repr or a message, but a Dask
        graph that writes to the store carries them, as it would for
        ``dd.read_parquet(url, storage_options=...)``.

    Examples
    --------
    >>> import hippo_dask as hippo, tempfile
    >>> store = hippo.Store(tempfile.mkdtemp())
    >>> store.runs()
    []

    An S3 bucket (or an S3-compatible server), with the options s3fs takes
    (``pip install "hippo_dask[s3]"``):

    >>> store = hippo.Store("s3://my-bucket/lineage", key="...", secret="...",
    ...                     client_kwargs={"endpoint_url": "http://127.0.0.1:9000"})  # doctest: +SKIP
    >>> hippo.open(store).backward([0])  # doctest: +SKIP
    """

    def __init__(self, url: str | os.PathLike[str], **storage_options: Any) -> None:
        self.url = _normalise(url)
        #: The fsspec options every read and write of this store uses (a Location's, unless given).
        self.storage_options = {**getattr(url, "storage_options", {}), **storage_options}
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self._base = Location(self.url, self.storage_options)
        # Only local paths are checked: on object stores a key and a "folder" of the same name can
        # coexist, and asking would cost a request every time a Store is made.
        if "file" in _protocols(self.fs) and self.fs.isfile(self.root):
            raise StoreError(f"{self.url} is a file, not a store: a store is a directory (created on first write) "
                             "or an fsspec URL such as s3://bucket/lineage/; pass a folder")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Store) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    # -- paths
    def fragment_dir(self, node_id: str) -> str:
        return _join(self._base, "fragments", safe_name(node_id, "node id"))

    def code_dir(self, node_id: str) -> str:
        """Where a node's replay copies live (pickled functions, values, fitted estimators), apart from lineage."""
        return _join(self._base, "code", safe_name(node_id, "node id"))

    def run_dir(self, run_id: str) -> str:
        return _join(self._base, "runs", safe_name(run_id, "run id"))

    def child(self, directory: str, name: str, what: str = "file name") -> str:
        """``directory/name`` for a ``name`` read from a manifest, checked to be one plain component."""
        return _join(directory, safe_name(name, what))

    def check_inside(self, url: str) -> None:
        """Refuse ``url`` when, in a local store, it resolves (through symbolic links) outside the store."""
        if "file" not in _protocols(self.fs):
            return  # object stores have no links: a checked name stays under the store's prefix
        root = os.path.realpath(self.root)
        target = os.path.realpath(url_to_fs(url)[1])
        if os.path.commonpath([root, target]) != root:
            raise StoreError(f"{url} resolves to {target}, outside the store {root} (a symbolic link?): refused; "
                             "a store's files must live inside it")

    # -- runs
    def start_run(self) -> str:
        """Create a new (incomplete) run and return its id."""
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        write_bytes(_join(self.run_dir(run_id), STARTED), json.dumps({"run_id": run_id, "created": time.time()}).encode())
        return run_id

    @contextlib.contextmanager
    def lease(self, run_id: str, every: float | None = None) -> Iterator[None]:
        """While the block runs, rewrite ``runs/<run_id>/lease.json`` every ``every`` seconds.

        A compute holds the lease of its run, so the run's newest write is never
        older than ``every`` (default ``LEASE_SECONDS``) while it computes, and
        :meth:`gc` never takes a run still being written for an abandoned one.
        """
        every = LEASE_SECONDS if every is None else every
        url = _join(self.run_dir(run_id), LEASE)
        stop = threading.Event()

        def write() -> None:
            try:
                write_bytes(url, json.dumps({"run_id": run_id, "refreshed": time.time(), "every": every,
                                             "pid": os.getpid(), "host": socket.gethostname()}).encode())
            except OSError:
                pass  # the store went away: the compute's own writes fail and say so

        def refresh() -> None:
            while not stop.wait(every):
                write()

        write()  # at once: gc knows the run is live however small its older_than

        thread = threading.Thread(target=refresh, name=f"hippo-lease-{run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with contextlib.suppress(*storage_errors()):  # the run is committed or failed: nothing holds it
                fs, path = url_to_fs(url)
                fs.rm(path)

    def commit_run(self, run_id: str, manifest: Mapping[str, Any]) -> None:
        """Write the run's manifest, last and atomically: the run becomes queryable."""
        body = dict(manifest, format_version=FORMAT_VERSION, run_id=run_id)
        write_bytes(_join(self.run_dir(run_id), MANIFEST), json.dumps(body, indent=1, default=str).encode())

    def runs(self) -> list[RunInfo]:
        """Every run in the store, oldest first; ``complete`` is False for runs without a manifest.

        One listing of ``runs/`` two levels deep (not one per run), and the start
        time from the run id (``start_run`` names runs by the second they start);
        only runs that share their second with another, or whose id has no time,
        have their ``started.json`` read for the exact time. 10,000 runs list in
        about 0.2 s on a local disk (``benches/many_runs.py``).
        """
        base = posixpath.join(self.root, "runs").rstrip("/")
        # Other processes write the store: list it, never a listing cached earlier (s3fs caches them)
        self.fs.invalidate_cache()
        if not self.fs.exists(base):
            return []
        names: dict[str, set[str]] = {}  # run id -> the names of its files
        if "file" in _protocols(self.fs):  # os.scandir: fsspec's local find stats every entry (8x slower)
            for entry in os.scandir(base):
                if entry.is_dir() and _SAFE_NAME.fullmatch(entry.name) and ".." not in entry.name:
                    try:
                        names[entry.name] = set(os.listdir(entry.path))
                    except FileNotFoundError:  # removed since the listing (a gc): gone, not listed
                        continue
        else:  # one listing of the prefix, however many runs (object stores list keys, not folders)
            for path, entry in self.fs.find(base, maxdepth=2, withdirs=True, detail=True).items():
                parts = path.rstrip("/")[len(base):].strip("/").split("/")
                if not parts[0] or not _SAFE_NAME.fullmatch(parts[0]) or ".." in parts[0]:
                    continue  # not a run hippo made (an odd name): not listed, never opened
                if len(parts) == 1:
                    if entry.get("type") == "directory":
                        names.setdefault(parts[0], set())
                elif len(parts) == 2:
                    names.setdefault(parts[0], set()).add(parts[1])
        second = {run_id: _id_time(run_id) for run_id in names}
        shared = {}
        for run_id, when in second.items():
            shared[when] = shared.get(when, 0) + 1
        infos = []
        for run_id, files in names.items():
            created = second[run_id]
            if (created is None or shared[created] > 1) and STARTED in files:
                try:  # the exact start, to order runs that started within the same second
                    created = float(json.loads(read_bytes(_join(self.run_dir(run_id), STARTED)))["created"])
                except (ValueError, KeyError, TypeError, OSError):
                    pass
            infos.append(RunInfo(run_id, created or 0.0, MANIFEST in files, FAILED in files))
        return sorted(infos, key=lambda r: (r.created, r.run_id))

    def gc(self, *, dry_run: bool = False, older_than: float | timedelta = timedelta(hours=1)) -> dict[str, str]:
        """Remove failed runs, and incomplete runs nothing has been written to for ``older_than``.

        A complete run (one with a manifest) is never removed, nor a run still
        being written: a compute writes a lease file into its run's folder when
        it starts and rewrites it every ``LEASE_SECONDS`` (30 s) while it runs,
        and a run whose lease was rewritten within three of those periods is
        kept whatever ``older_than`` says, however long it computes. Other runs
        without a manifest are removed when the newest file in their folder is
        older than ``older_than``. A run whose files cannot be dated is kept. Failed runs (a user function raised) are removed whatever their
        age, so :func:`hippo_dask.debug` can no longer re-run them.

        Lineage fragments and stored code (the store's ``fragments/`` and
        ``code/`` folders) are kept: they are named by content and shared
        between runs, and a run still computing may be using one that no
        committed run names yet.

        Parameters
        ----------
        dry_run : bool, default False
            Only say what would be removed.
        older_than : float (seconds) or datetime.timedelta, default 1 hour
            How long an incomplete run must have gone without a write.

        Returns
        -------
        dict of str to str
            Run id -> why it was (or would be) removed, oldest run first.

        Examples
        --------
        >>> import hippo_dask as hippo, tempfile
        >>> store = hippo.Store(tempfile.mkdtemp())
        >>> run_id = store.start_run()   # a run that never committed
        >>> store.gc()                   # just started: it may still be computing
        {}
        >>> list(store.gc(older_than=0, dry_run=True).values())
        ['incomplete: no manifest, nothing written for 0 min']
        >>> list(store.gc(older_than=0)) == [run_id], store.runs()
        (True, [])
        """
        limit = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit >= 0:
            raise StoreError(f"gc: older_than must be a duration of 0 or more (seconds or a timedelta), got {older_than!r}")
        now = time.time()
        removed: dict[str, str] = {}
        for info in self.runs():
            if info.complete:
                continue
            # Looked at again just before removing, so a run that committed since runs() listed it is kept.
            path = posixpath.join(self.root, "runs", info.run_id)
            try:
                self.fs.invalidate_cache(path)  # looked at again, not in a listing a filesystem cached
                entries = self.fs.find(path, withdirs=True, detail=True)
            except FileNotFoundError:  # another gc removed it since runs() listed it
                continue
            names = {posixpath.basename(p.rstrip("/")) for p in entries}
            if MANIFEST in names:
                continue
            if FAILED in names:
                reason = "failed: a user function raised"
            elif LEASE in names and self._lease_is_live(posixpath.join(path, LEASE), now):
                continue  # a compute holds it: never removed, whatever older_than says
            else:
                newest = self._newest_write(entries)
                if newest is None or now - newest < limit:
                    continue
                reason = f"incomplete: no manifest, nothing written for {_duration(now - newest)}"
            if not dry_run:
                try:
                    self.fs.rm(path, recursive=True)
                except FileNotFoundError:  # another gc removed it meanwhile: gone all the same
                    pass
            removed[info.run_id] = reason
        return removed

    def _lease_is_live(self, path: str, now: float) -> bool:
        """Whether a compute rewrote this lease within 3 of its periods (a live run); unsure counts as live."""
        try:
            written = self.fs.modified(path).timestamp()
            with self.fs.open(path, "rb") as f:
                every = json.loads(f.read(4096)).get("every", LEASE_SECONDS)
        except FileNotFoundError:
            return False
        except (NotImplementedError, OSError, ValueError, AttributeError):
            return True
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every < 86400:
            every = LEASE_SECONDS
        return now - written < 3 * every

    def _newest_write(self, entries: Mapping[str, Mapping[str, Any]]) -> float | None:
        """When the newest of ``entries`` (fsspec ``find`` details) was written; None if a file cannot be dated."""
        newest = None
        for path, entry in entries.items():
            try:
                when = self.fs.modified(path).timestamp()
            except (NotImplementedError, OSError, ValueError):
                if entry.get("type") == "directory":  # object stores have no folders to date; their files tell
                    continue
                return None
            newest = when if newest is None else max(newest, when)
        return newest

    def fail_run(self, run_id: str, record: Mapping[str, Any], blobs: Mapping[str, bytes]) -> None:
        """Mark a run failed: its failure record (JSON) and the blobs it names (failing rows, code)."""
        run_dir = self.run_dir(run_id)
        names = {}
        for key, data in blobs.items():
            if data:
                names[key] = f"failed-{key}.bin"
                write_bytes(_join(run_dir, names[key]), data)
        body = dict(record, blobs=names, run_id=run_id, format_version=FORMAT_VERSION)
        write_bytes(_join(run_dir, FAILED), json.dumps(body, indent=1, default=str).encode())

    def failure(self, run_id: str) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The failure record of a failed run and its blobs (``rows``, ``code``)."""
        run_dir = self.run_dir(run_id)
        fs, path = url_to_fs(run_dir)
        fs.invalidate_cache(path)  # the run as it is now, not as a cached listing saw it
        if not fs.exists(posixpath.join(path, FAILED)):
            known = [r.run_id for r in self.runs() if r.failed]
            raise RunNotFoundError(f"run {run_id!r} in {self.url} is not a failed run; failed runs here: {known[-5:] or 'none'}")
        record = json.loads(read_bytes(_join(run_dir, FAILED)))
        blobs = {key: read_bytes(self.child(run_dir, name)) for key, name in record.get("blobs", {}).items()}
        blobs.setdefault("code", b"")
        return record, blobs

    def manifest(self, run_id: str) -> dict[str, Any]:
        """The committed manifest of ``run_id``; raises if the run is unknown or incomplete."""
        run_dir = self.run_dir(run_id)
        fs, path = url_to_fs(run_dir)
        fs.invalidate_cache(path)  # committed by another process since a listing was cached? (s3fs caches them)
        if not fs.exists(path):
            known = [r.run_id for r in self.runs()]
            raise RunNotFoundError(f"no run {run_id!r} in {self.url}; runs here: {known[-5:] or 'none'}")
        manifest_url = _join(run_dir, MANIFEST)
        if not fs.exists(posixpath.join(path, MANIFEST)) and fs.exists(posixpath.join(path, FAILED)):
            raise IncompleteRunError(
                f"run {run_id!r} in {self.url} failed: a user function raised; it answers no queries. "
                f"hippo.debug({run_id!r}) re-runs the function on the rows it failed on"
            )
        if not fs.exists(posixpath.join(path, MANIFEST)):
            raise IncompleteRunError(
                f"run {run_id!r} in {self.url} has no manifest: it was killed or is still running, "
                "so it cannot answer queries; compute the pipeline again"
            )
        self.check_inside(manifest_url)
        size = fs.size(posixpath.join(path, MANIFEST))
        if size is not None and size > MAX_MANIFEST_BYTES:
            raise CorruptRunError(f"{manifest_url}: the manifest is {size:,} bytes, more than the {MAX_MANIFEST_BYTES:,} "
                                  "any run writes (the ids are in fragments, not here): damaged or not hippo's")
        try:
            manifest = json.loads(read_bytes(manifest_url))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise CorruptRunError(f"{manifest_url}: the manifest is not valid JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(manifest, dict):
            raise CorruptRunError(f"{manifest_url}: the manifest is not a JSON object (got {type(manifest).__name__})")
        if manifest.get("format_version") not in READ_VERSIONS:
            raise CorruptRunError(
                f"{manifest_url}: format version {manifest.get('format_version')!r}, this hippo_dask reads "
                f"{' and '.join(map(str, READ_VERSIONS))}; a newer hippo_dask wrote it: upgrade to read it"
            )
        return manifest

    def read_fragment(self, url: str, checksum: str | None = None) -> dict[str, Any]:
        """Decode one fragment, checking it against the checksum the manifest recorded."""
        self.check_inside(url)
        try:
            data = read_bytes(url)
        except FileNotFoundError:
            raise CorruptRunError(f"{url}: a fragment the manifest names is missing") from None
        if checksum is not None and f"{_core.checksum(data):016x}" != checksum:
            raise CorruptRunError(f"{url}: checksum mismatch, the fragment is damaged")
        try:
            return _core.decode_fragment(data)
        except DecodeError as exc:
            raise CorruptRunError(f"{url}: {exc}") from None


def _id_time(run_id: str) -> float | None:
    """The second a run started, from its id (``20261127T090014-5732c516``, local time); None if it has none."""
    head = run_id.split("-", 1)[0]
    try:
        return time.mktime(time.strptime(head, "%Y%m%dT%H%M%S"))
    except (ValueError, OverflowError):
        return None


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _duration(seconds: float) -> str:
    """``seconds`` for a person: minutes up to two hours, then hours up to two days, then days."""
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


_default_store: Store | None = None


def set_store(url: str | os.PathLike[str] | Store, **storage_options: Any) -> Store:
    """Set where lineage is written from now on (default ``./.hippo`` or ``$HIPPO_STORE``).

    Set it before building a pipeline: sources remember the store they were
    created with, and everything computed from them is written there. A path
    to an existing file is refused (:class:`~hippo_dask.errors.StoreError`).

    Parameters
    ----------
    url : str, path or Store
        A local folder, any fsspec URL (``s3://bucket/lineage``, ...) or a :class:`Store`.
    **storage_options
        fsspec options for ``url`` (see :class:`Store`): used by every read and
        write of the store, on the driver and on the Dask workers. Not with a
        :class:`Store`, which has its own.

    Returns
    -------
    Store

    Examples
    --------
    >>> import hippo_dask as hippo, tempfile
    >>> hippo.set_store(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Store(...)

    An S3 bucket (``pip install "hippo_dask[s3]"``); without options, s3fs reads
    the standard ``AWS_*`` environment variables in each process:

    >>> hippo.set_store("s3://my-bucket/lineage", key="...", secret="...",
    ...                 client_kwargs={"endpoint_url": "http://127.0.0.1:9000"})  # doctest: +SKIP
    Store('s3://my-bucket/lineage')
    """
    global _default_store
    if isinstance(url, Store) and storage_options:
        raise StoreError(f"set_store({url!r}, ...): a Store has its own storage options; pass them to "
                         "hippo.Store(url, ...) or pass set_store the URL")
    _default_store = url if isinstance(url, Store) else Store(url, **storage_options)
    return _default_store


def get_store() -> Store:
    """The store new sources write to."""
    global _default_store
    if _default_store is None:
        _default_store = Store(os.environ.get("HIPPO_STORE", ".hippo"))
    return _default_store


__all__ = ["Store", "RunInfo", "set_store", "get_store"]
