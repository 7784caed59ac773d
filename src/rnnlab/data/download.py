"""Download a registry dataset into the cache, verify it, unpack it; nothing half-written is ever left behind.

    >>> from rnnlab.data import registry
    >>> download_dataset(registry.get("tiny-shakespeare")).folder        # doctest: +SKIP
    PosixPath('/home/me/.cache/rnnlab-data/tiny-shakespeare')

- **Cache**: ``$RNNLAB_DATA``, default ``~/.cache/rnnlab-data``; a dataset's files land in ``<cache>/<name>/``.
- **Fetch**: urllib, streamed in 1 MiB blocks with a timeout on every socket operation, the SHA-256 computed while
  the bytes arrive, into a temporary file beside the target. Only a complete file whose checksum matches (or, when
  the registry states none, whose length matches Content-Length) is renamed into place. A wrong checksum, an HTTP
  error, a timeout or a connection cut mid-file removes the temporary file and raises :class:`DownloadError`
  naming the URL and what happened.
- **Re-runs**: a file already in place whose checksum matches is not fetched again (``force=True`` fetches anyway).
- **Unpack** (.tar.gz, .tgz, .tar, .zip, .gz): every member is checked first; absolute paths, ``..``, links that
  point outside the folder and device files are refused (:class:`UnsafeArchiveError`) before anything is
  written. Members are extracted into a temporary folder and renamed into the dataset's folder when all is done.

A small state file, ``<cache>/<name>/.rnnlab-download.json``, records what was fetched and verified, so that
``rnnlab datasets`` can tell "downloaded, verified" from "downloaded, unverified" without re-reading the files.
"""
from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import http.client
import json
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional, Union

from rnnlab import __version__
from rnnlab.data.registry import Dataset, RemoteFile, archive_suffix

log = logging.getLogger(__name__)

ENV = "RNNLAB_DATA"
DEFAULT_CACHE = "~/.cache/rnnlab-data"
STATE_FILE = ".rnnlab-download.json"
BLOCK = 1 << 20  # bytes read (and hashed) per step
USER_AGENT = f"rnnlab/{__version__} (dataset download; +https://github.com/rnnlab)"

PathLike = Union[str, os.PathLike]


class DownloadError(RuntimeError):
    """A download or unpack failed; the message names the URL or file and what happened."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the target folder (absolute path, ``..``, an outside link)."""


def cache_dir() -> Path:
    """The cache folder: ``$RNNLAB_DATA`` when set, else ``~/.cache/rnnlab-data`` (``~`` expanded)."""
    return Path(os.environ.get(ENV) or DEFAULT_CACHE).expanduser()


def dataset_dir(name: str, root: Optional[PathLike] = None) -> Path:
    """Where dataset ``name``'s files land: ``<root or cache>/<name>``."""
    return (Path(root).expanduser() if root is not None else cache_dir()) / name


def sha256_of(path: PathLike) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


# --- fetch ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fetched:
    """One file in place."""

    path: Path
    sha256: str
    """The file's actual SHA-256."""
    verified: bool
    """Whether it matched a stated checksum (False: there was none to check against)."""
    fetched: bool
    """Whether it was downloaded now (False: already in place and verified, so not fetched again)."""


Progress = Callable[[int], None]


@contextlib.contextmanager
def _progress_bar(label: str, total: Optional[int], show: Optional[bool]) -> Iterator[Progress]:
    """A rich progress bar on stderr (when ``show``, or when stderr is a terminal for ``show=None``)."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _open(url: str, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; nothing was downloaded") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"{url}: cannot connect ({e.reason}); nothing was downloaded") from None
    except TimeoutError:
        raise DownloadError(f"{url}: no answer within {timeout:g} s; nothing was downloaded") from None
    except (http.client.HTTPException, OSError) as e:
        raise DownloadError(f"{url}: the request failed ({type(e).__name__}: {e}); nothing was downloaded") from None


def _content_length(response) -> Optional[int]:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _stream(url: str, response, out, digest, expected: Optional[int], timeout: float, on_bytes: Progress) -> int:
    """Copy the response body into ``out`` and ``digest``; the number of bytes, or a DownloadError."""
    received = 0
    of = f" of {expected:,}" if expected is not None else ""
    while True:
        try:
            block = response.read(BLOCK)
        except TimeoutError:
            raise DownloadError(f"{url}: no data for {timeout:g} s after {received:,}{of} bytes (timed out); "
                                "the partial file was removed") from None
        except (http.client.HTTPException, OSError) as e:  # IncompleteRead, a reset connection, ...
            raise DownloadError(f"{url}: the connection broke after {received:,}{of} bytes "
                                f"({type(e).__name__}); the partial file was removed") from None
        if not block:
            break
        out.write(block)  # a full disk raises OSError here; the caller removes the partial file
        digest.update(block)
        received += len(block)
        on_bytes(len(block))
    if expected is not None and received != expected:
        raise DownloadError(f"{url}: the connection closed after {received:,}{of} bytes; "
                            "the partial file was removed")
    return received


def fetch(url: str, dest: PathLike, *, sha256: Optional[str] = None, size: Optional[int] = None,
          timeout: float = 30.0, force: bool = False, progress: Optional[bool] = None) -> Fetched:
    """Download ``url`` to ``dest`` and verify it against ``sha256`` (when given).

    ``dest`` appears only when the download is complete and verified: the bytes go to a temporary file in
    ``dest``'s folder first, and any failure removes it. A ``dest`` already in place that matches ``sha256`` is
    kept and not fetched again (``force`` fetches anyway); one that does not match is fetched again. Without a
    ``sha256`` an existing ``dest`` is kept as it is (it was renamed into place complete).
    """
    dest = Path(dest)
    if dest.is_file() and not force:
        if sha256 is None:
            log.info("%s: already downloaded (no checksum to verify it against)", dest)
            return Fetched(dest, sha256_of(dest), verified=False, fetched=False)
        actual = sha256_of(dest)
        if actual == sha256:
            log.info("%s: already downloaded, checksum verified", dest)
            return Fetched(dest, actual, verified=True, fetched=False)
        log.warning("%s: checksum %s does not match the expected %s; fetching it again", dest, actual, sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest, idle=max(60.0, 2 * timeout))
    if sha256 is None:
        log.warning("%s: no checksum is known for this file; it cannot be verified", url)

    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, contextlib.closing(_open(url, timeout)) as response:
            expected = _content_length(response)
            with _progress_bar(dest.name, expected or size, progress) as on_bytes:
                received = _stream(url, response, out, digest, expected, timeout, on_bytes)
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256:
            raise DownloadError(f"{url}: SHA-256 mismatch: expected {sha256}, got {actual} ({received:,} bytes); "
                                "the file on the server changed or arrived corrupted; nothing was kept")
        if sha256 is None and size is not None and received != size:
            raise DownloadError(f"{url}: expected {size:,} bytes, got {received:,}; nothing was kept")
        os.replace(tmp, dest)
    except BaseException:  # a failure, or Ctrl-C: never leave the partial file
        tmp.unlink(missing_ok=True)
        raise
    log.info("%s: %s bytes%s", dest, f"{received:,}", ", checksum verified" if sha256 else " (unverified)")
    return Fetched(dest, actual, verified=sha256 is not None, fetched=True)


def _remove_stale_parts(dest: Path, idle: float) -> None:
    """Remove temporary files of ``dest`` left by a download that was killed (not written to for ``idle`` s).

    A download in progress writes its temporary file at least once per ``timeout``, so it is never taken
    for a stale one."""
    now = time.time()
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        with contextlib.suppress(OSError):
            if now - part.stat().st_mtime > idle:
                part.unlink()
                log.info("%s: removed the partial file of an interrupted download", part)


# --- unpack ---------------------------------------------------------------------------------------------

def _unsafe_name(name: str) -> Optional[str]:
    """Why an archive member name is unsafe, or None when it stays inside the target."""
    if not name or name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "an absolute path"
    if ".." in PurePosixPath(name).parts or ".." in PureWindowsPath(name).parts:
        return "a path that climbs out with '..'"
    return None


def _link_escapes(member: tarfile.TarInfo) -> bool:
    """Whether a tar link member points outside the archive's root."""
    target = member.linkname
    if target.startswith("/") or PureWindowsPath(target).drive:
        return True
    base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
    depth = 0
    for part in (base / target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def _check_tar(archive: Path, tar: tarfile.TarFile) -> None:
    for member in tar.getmembers():
        why = _unsafe_name(member.name)
        if why is None and (member.issym() or member.islnk()) and _link_escapes(member):
            why = f"a link to {member.linkname!r}, outside the target folder"
        if why is None and not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            why = "a device, FIFO or other special file"
        if why:
            raise UnsafeArchiveError(f"{archive}: refused member {member.name!r} ({why}); nothing was extracted")


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        why = _unsafe_name(info.filename)
        if why is None and (info.external_attr >> 16) & 0o170000 == 0o120000:
            why = "a symbolic link"
        if why:
            raise UnsafeArchiveError(f"{archive}: refused member {info.filename!r} ({why}); nothing was extracted")


def _extract(archive: Path, suffix: str, into: Path) -> None:
    """Unpack ``archive`` into the (empty) folder ``into``, refusing unsafe members before writing anything."""
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                _check_zip(archive, zf)
                zf.extractall(into)
        elif suffix == ".gz":
            with gzip.open(archive, "rb") as src, open(into / archive.name[: -len(".gz")], "wb") as out:
                shutil.copyfileobj(src, out, BLOCK)
        else:
            with tarfile.open(archive) as tar:
                _check_tar(archive, tar)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: the stdlib's own guard too
                    tar.extractall(into, filter="data")
                else:
                    tar.extractall(into)
    except UnsafeArchiveError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, gzip.BadGzipFile, OSError) as e:
        raise DownloadError(f"{archive}: cannot unpack ({type(e).__name__}: {e}); nothing was extracted") from None


def unpack(archive: PathLike, target: Optional[PathLike] = None) -> list[str]:
    """Unpack a .tar.gz/.tgz/.tar/.zip/.gz archive into ``target`` (default: the archive's folder).

    Everything is extracted into a temporary folder inside ``target`` first; only when that succeeded are its
    top-level entries renamed into ``target``, replacing entries of the same name. Returns those names.
    """
    archive = Path(archive)
    target = Path(target) if target is not None else archive.parent
    suffix = archive_suffix(archive.name)
    if suffix is None:
        raise ValueError(f"{archive}: not an archive this can unpack (expected one of .tar.gz, .tgz, .tar, .zip, .gz)")
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target, prefix=".unpack-"))
    try:
        _extract(archive, suffix, tmp)
        entries = sorted(p.name for p in tmp.iterdir())
        for name in entries:
            if name in (archive.name, STATE_FILE):
                raise UnsafeArchiveError(f"{archive}: refused member {name!r} (it would replace the archive or "
                                         "the download record); nothing was extracted")
        for name in entries:
            _remove(target / name)
            os.replace(tmp / name, target / name)
        return entries
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


# --- datasets -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Downloaded:
    """A dataset in the cache."""

    dataset: Dataset
    folder: Path
    files: tuple[Fetched, ...]
    missing: tuple[str, ...]
    """Entries of ``dataset.unpacks_to`` that are not in the folder (the source changed its layout)."""

    @property
    def verified(self) -> bool:
        return all(f.verified for f in self.files)

    @property
    def train_command(self) -> str:
        return self.dataset.train_command(display_path(self.folder))


def _read_state(folder: Path) -> dict:
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(folder: Path, state: dict) -> None:
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / STATE_FILE)


def _unpacked(folder: Path, state: dict, file: RemoteFile, digest: str) -> bool:
    """Whether ``file`` was already unpacked from this very archive and its entries are still there."""
    record = state.get("unpacked", {}).get(file.filename)
    return (isinstance(record, dict) and record.get("sha256") == digest
            and all((folder / name).exists() for name in record.get("entries", [])))


def download_dataset(dataset: Dataset, *, root: Optional[PathLike] = None, force: bool = False,
                     timeout: float = 30.0, progress: Optional[bool] = None) -> Downloaded:
    """Fetch, verify and unpack every file of ``dataset`` into ``<root or cache>/<name>/``.

    Re-running it fetches nothing that is already in place and verified, and unpacks nothing already unpacked
    from the same archive; ``force`` fetches and unpacks everything again.
    """
    folder = dataset_dir(dataset.name, root)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _download_into(dataset, folder, force=force, timeout=timeout, progress=progress)
    except BaseException:
        if created and not any(folder.iterdir()):  # leave no empty folder that looks like a download
            folder.rmdir()
        raise


def _download_into(dataset: Dataset, folder: Path, *, force: bool, timeout: float,
                   progress: Optional[bool]) -> Downloaded:
    state = {} if force else _read_state(folder)
    fetched = []
    for file in dataset.files:
        got = fetch(file.url, folder / file.filename, sha256=file.sha256, size=file.size, timeout=timeout,
                    force=force, progress=progress)
        fetched.append(got)
        state.setdefault("files", {})[file.filename] = {
            "url": file.url, "sha256": got.sha256, "verified": got.verified}
        if file.is_archive and not _unpacked(folder, state, file, got.sha256):
            entries = unpack(got.path, folder)
            state.setdefault("unpacked", {})[file.filename] = {"sha256": got.sha256, "entries": entries}
        _write_state(folder, state)
    for path in dataset.remove:
        _remove(folder / path)
    missing = tuple(p for p in dataset.unpacks_to if not (folder / p).exists())
    if missing:
        log.warning("%s: the download did not leave %s; the source may have changed its layout",
                    folder, ", ".join(missing))
    state.update(dataset=dataset.name, complete=True, verified=all(f.verified for f in fetched))
    _write_state(folder, state)
    return Downloaded(dataset, folder, tuple(fetched), missing)


@dataclass(frozen=True)
class Status:
    """What the cache holds of a dataset (read from its download record; no file is re-read)."""

    folder: Path
    downloaded: bool
    verified: bool


def status(dataset: Dataset, root: Optional[PathLike] = None) -> Status:
    """Whether ``dataset`` is downloaded (completely) and verified, from its download record."""
    folder = dataset_dir(dataset.name, root)
    state = _read_state(folder)
    files = state.get("files", {})
    downloaded = bool(state.get("complete")) and all(
        f.filename in files and (folder / f.filename).is_file() for f in dataset.files)
    return Status(folder, downloaded, downloaded and bool(state.get("verified")))


def display_path(path: PathLike) -> str:
    """``path`` with the home folder written as ``~`` (what a user would type)."""
    path, home = Path(path), Path.home()
    try:
        return f"~/{path.relative_to(home).as_posix()}"
    except ValueError:
        return str(path)


def _human(size: Optional[int]) -> str:
    if size is None:
        return "size ?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def listing(root: Optional[PathLike] = None) -> str:
    """The registry as text: each dataset's name, task, size, checksum, cache status, licence and command."""
    from rnnlab.data.registry import DATASETS

    base = dataset_dir("", root)
    lines = [f"Downloadable (rnnlab datasets download NAME [--force]), into {display_path(base)}/NAME "
             f"(set ${ENV} to move it):"]
    for d in DATASETS.values():
        s = status(d, root)
        checksum = "sha256" if d.verifiable else "unverified (no checksum known)"
        state = ("downloaded, verified" if s.verified else "downloaded, unverified") if s.downloaded \
            else "not downloaded"
        lines.append(f"  {d.name:<22} {d.task:<10} {_human(d.size):>9}   {state:<22}   checksum: {checksum}")
        lines += textwrap.wrap(d.description, 110, initial_indent=" " * 6, subsequent_indent=" " * 6)
        lines += textwrap.wrap(f"licence: {d.licence}", 110, initial_indent=" " * 6, subsequent_indent=" " * 15)
        lines.append(f"      -> {d.train_command(display_path(s.folder))}")
    return "\n".join(lines)
