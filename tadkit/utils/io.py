"""Atomic writes, write failures as clear errors, and directory checks / locks for outputs.

* :func:`atomic_open` (and the ``write_*`` / ``*_save`` helpers on it): a reader never sees a
  half-written output or checkpoint; a failed write leaves the previous file and no temp file.
* A write that fails because the disk is full, the file system is read-only or the location is not
  writable for this user becomes one :class:`~tadkit.errors.TadkitError` naming the file and saying
  "no space left on device" / "read-only file system" / "permission denied" (the CLI exits with 2),
  also when the OSError is buried under a library's own error (``torch.save`` reports a full disk
  as ``RuntimeError: unexpected pos ...`` with the OSError as its context).
* :func:`ensure_writable_dir` checks an output directory before any expensive work;
  :func:`lock_directory` takes an exclusive lock on it (``fcntl.flock`` on ``DIR/.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, IO

from tadkit.errors import TadkitError

# errno -> what the user is told; these are the failures a user can fix (free space, another --out)
WRITE_FAILURES: dict[int, str] = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded (no space left for this user)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied (read-only for this user)",
    errno.EPERM: "permission denied (read-only for this user)",
}


TEMP_SUFFIX = ".tmp"  # atomic_open's temp files are ".<name>.<random>.tmp" beside their target


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# failures that only a write can cause (EACCES / EPERM can also come from reading)
WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class WriteFailure(TadkitError):
    """A write failed for a reason the user can fix: full disk, read-only file system, no permission."""

    def __init__(self, message: str, *, file: str, errno_: int, reason: str) -> None:
        super().__init__(message, file=file)
        self.errno = errno_
        self.reason = reason

    def with_hint(self, hint: str) -> "WriteFailure":
        return WriteFailure(f"{self.message}; {hint}", file=str(self.file), errno_=self.errno, reason=self.reason)


def write_failure_errno(error: BaseException, errnos: frozenset[int] | None = None) -> OSError | None:
    """The OSError with a :data:`WRITE_FAILURES` errno (or one of ``errnos``) in ``error``'s
    cause/context chain, or None."""
    wanted = WRITE_FAILURES.keys() if errnos is None else errnos
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TadkitError):
            return None  # already explained
        if isinstance(current, OSError) and current.errno in wanted:
            return current
        current = current.__cause__ or current.__context__
    return None


def write_failure(error: BaseException, path: str | os.PathLike, what: str = "write", hint: str = "",
                  errnos: frozenset[int] | None = None) -> WriteFailure | None:
    """A :class:`WriteFailure` for a failed write to ``path`` (``None`` when ``error`` is no such failure).

    ``errnos`` narrows the errors recognised (default: every errno of :data:`WRITE_FAILURES`).
    """
    if not isinstance(error, Exception):
        return None  # KeyboardInterrupt / SystemExit stay what they are
    os_error = write_failure_errno(error, errnos)
    if os_error is None:
        return None
    reason = WRITE_FAILURES[os_error.errno]  # type: ignore[index]
    message = f"cannot {what}: {reason}"
    return WriteFailure(f"{message}; {hint}" if hint else message, file=str(path), errno_=int(os_error.errno or 0),
                        reason=reason)


@contextlib.contextmanager
def translate_write_errors(path: str | os.PathLike, what: str = "write", hint: str = "",
                           errnos: frozenset[int] | None = None) -> Iterator[None]:
    """Re-raise a full-disk / read-only / permission failure inside the block as a WriteFailure."""
    try:
        yield
    except Exception as error:
        failure = write_failure(error, path, what, hint, errnos)
        if failure is None:
            raise
        raise failure from error




@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    On any failure the temp file is removed and ``path`` keeps its previous contents; a full disk,
    a read-only file system or a missing write permission is raised as a TadkitError naming ``path``.
    """
    path = Path(path)
    with translate_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give outputs normal permissions
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        failure = write_failure(error, path)
        if failure is not None:
            raise failure from error
        raise


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=indent)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def numpy_save(path: str | os.PathLike, array: Any) -> None:
    """``np.save`` through :func:`atomic_open`, with the bytes written checked.

    On a full disk numpy's ``tofile`` raises an OSError without an errno ("N requested and M written")
    and a short write can also pass silently; both become "no space left on device" naming ``path``
    (previous file intact, no temp file left).
    """
    import io as _io

    import numpy as np

    array = np.asanyarray(array)
    if array.dtype.hasobject:
        raise ValueError("numpy_save writes numeric arrays only (object arrays would be pickled)")
    header = _io.BytesIO()  # np.save writes a version 1.0 header unless it is over 64 KiB
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    expected = len(header.getvalue()) + array.nbytes
    with atomic_open(path, "wb") as handle:
        try:
            np.save(handle, array, allow_pickle=False)
            handle.flush()
        except OSError as error:
            if error.errno is not None:
                raise
            raise OSError(errno.ENOSPC, f"short write ({error})") from error
        written = os.fstat(handle.fileno()).st_size
        if written != expected:
            raise OSError(errno.ENOSPC, f"short write: {written} of {expected} bytes")


def check_input_file(path: str | os.PathLike, what: str = "file", *, field: str | None = None,
                     video: str | None = None, missing: str | None = None) -> Path:
    """``path`` as a Path when it is a regular file; otherwise one TadkitError saying whether it is
    missing (``missing``, default "<what> not found") or a directory (not "not found" for a directory)."""
    path = Path(path)
    if path.is_dir():
        raise TadkitError(f"is a directory, expected a {what}", file=str(path), video=video, field=field)
    if not path.exists():
        raise TadkitError(missing or f"{what} not found", file=str(path), video=video, field=field)
    if not path.is_file():
        raise TadkitError(f"is not a regular file, expected a {what}", file=str(path), video=video, field=field)
    return path


# --------------------------------------------------------------------------------------------------
# Output directories: writable? locked?
# --------------------------------------------------------------------------------------------------


def ensure_writable_dir(directory: str | os.PathLike, hint: str = "") -> bool:
    """Create ``directory`` if needed and prove a file can be written in it (a small probe file,
    written, synced and removed). Returns whether the directory was created by this call.

    A read-only file system, a missing permission or a full disk is a TadkitError naming the
    directory, raised before the caller loads anything.
    """
    directory = Path(directory)
    created = not directory.exists()
    if directory.exists() and not directory.is_dir():
        raise TadkitError("exists and is not a directory", file=str(directory), field="out_dir")
    with translate_write_errors(directory, "create the directory", hint):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if error.errno in WRITE_FAILURES:
                raise
            raise TadkitError(f"cannot create the directory ({error.strerror or error})", file=str(directory),
                              field="out_dir") from None
    with translate_write_errors(directory, "write in the directory", hint):
        fd, probe = tempfile.mkstemp(prefix=".tadkit_write_probe.", dir=directory)
        try:
            os.write(fd, b"tadkit write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)
    return created


def remove_stale_tmp(directory: str | os.PathLike, extra_suffixes: tuple[str, ...] = ()) -> list[tuple[Path, int]]:
    """Delete the temp files a killed writer left in ``directory`` (not below it): hidden files named
    like :func:`atomic_open`'s (``.<name>.<random>.tmp``) or ending in one of ``extra_suffixes``.
    Returns ``[(path, size in bytes)]`` of what went.

    Call it only while the directory is yours (e.g. under :func:`lock_directory`): a writer that is
    still running would lose its temp file.
    """
    suffixes = (TEMP_SUFFIX, *extra_suffixes)
    removed: list[tuple[Path, int]] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if not (entry.name.startswith(".") and entry.name.endswith(suffixes) and entry.is_file(follow_symlinks=False)):
                continue
            size = entry.stat(follow_symlinks=False).st_size
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append((Path(entry.path), size))
    return sorted(removed)


LOCK_NAME = ".lock"


class DirectoryLocked(TadkitError):
    """Another process holds the lock of a directory (``pid`` is its process id when known)."""

    def __init__(self, message: str, *, file: str, pid: int | None) -> None:
        super().__init__(message, file=file, field="out_dir")
        self.pid = pid


class DirectoryLock:
    """An exclusive ``fcntl.flock`` on ``DIR/.lock`` (released by :meth:`release` or process exit).

    The lock file holds the owner's pid, so a refused process can name it. The file itself stays
    (removing a lock file while others may open it races); only the kernel lock counts.
    """

    def __init__(self, directory: Path, fd: int | None) -> None:
        self.directory = directory
        self.path = directory / LOCK_NAME
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_holder(directory: str | os.PathLike) -> int | None:
    """The pid written in ``DIR/.lock`` (whoever last held it), or None."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text(encoding="utf-8").strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, IndexError):
        return None


def lock_directory(directory: str | os.PathLike, hint: str = "") -> DirectoryLock:
    """Take the exclusive lock of ``directory`` (which must exist) without waiting.

    Raises :class:`DirectoryLocked` (a TadkitError naming the directory and the holder's pid) when
    another process holds it. Where ``fcntl`` does not exist (Windows) no lock is taken.
    """
    directory = Path(directory)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return DirectoryLock(directory, None)
    path = directory / LOCK_NAME
    with translate_write_errors(path, "create the lock file", hint):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise TadkitError(f"cannot lock the directory ({error.strerror})", file=str(directory),
                              field="out_dir") from None
        pid = lock_holder(directory)
        who = f"pid {pid}" if pid is not None else "pid unknown"
        message = f"is in use by another process ({who}; lock file {path.name})"
        raise DirectoryLocked(f"{message}; {hint}" if hint else message, file=str(directory), pid=pid) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass  # the kernel lock is what counts; the pid is only for the message
    return DirectoryLock(directory, fd)


__all__ = [
    "DirectoryLock",
    "DirectoryLocked",
    "LOCK_NAME",
    "WRITE_FAILURES",
    "WRITE_ONLY_ERRNOS",
    "WriteFailure",
    "TEMP_SUFFIX",
    "atomic_open",
    "check_input_file",
    "ensure_writable_dir",
    "lock_directory",
    "lock_holder",
    "numpy_save",
    "torch_save",
    "translate_write_errors",
    "write_failure",
    "write_failure_errno",
    "write_json",
    "write_text",
]
