"""Atomic file writes: a file appears under its final name complete, or not at all.

``atomic_open`` writes a temporary file beside the target, flushes and fsyncs it, then
``os.replace``-s it onto the target. Three details make it safe to use for every file the zoo
writes (checkpoints, ``save_pretrained`` output, downloads):

- The temporary file is created with mode 0o666 and the umask applied, as ``open()`` would, so
  the result is readable like any other file the user writes (``mkstemp`` would make it 0600).
- It is named ``.<name>.<host>.<pid>.<random>.tmp``. A writer killed mid-write leaves it
  behind; the next write into the same directory removes those whose process, on this host, is
  gone, so a run killed during checkpointing again and again does not fill the disk.
- A failed write is a :class:`~zoo.shared.errors.WriteError` that names the file and the cause:
  "no space left on device writing <file>", not the zip-writer offset error that
  ``torch.save`` turns ENOSPC into.

``check_writable`` is the same path tried once with a small probe file, for a training run to
call before its first epoch.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import WriteError

# The host goes into temp names so that a writer on another machine sharing the directory (NFS)
# is never mistaken for a dead local process.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TEMP_NAME = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_write = os.write  # every byte goes through here (tests replace it to simulate a full disk)


def _temp_path(path: Path) -> Path:
    return path.parent / f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # on Windows os.kill(pid, 0) would terminate the process: keep its files
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, another user's
        return True
    return True


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed atomic writers on this host left in ``directory``.

    Only names this module makes are considered, and only those whose writer process no longer
    exists; a live writer's file is kept. Returns the paths removed. Never raises.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or match["host"] != _HOST or _pid_alive(int(match["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _write_error(exc: OSError, path: Path) -> WriteError:
    """A :class:`WriteError` for ``exc`` raised while writing ``path``, keeping its errno."""
    if exc.errno in _NO_SPACE:
        message = (f"no space left on device writing {path}: free space on that disk or write to "
                   "another directory (e.g. another --output-dir)")
    elif exc.errno in _NOT_WRITABLE:
        message = (f"cannot write {path}: {exc.strerror} (the directory {path.parent} is read-only or "
                   "not writable by this user); write to another directory or fix its permissions")
    elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
        message = f"cannot write {path}: the directory {path.parent} does not exist"
    else:
        message = f"could not write {path}: {exc.strerror or exc}"
    error = WriteError(message)
    error.errno = exc.errno  # strerror / filename stay unset: they would replace the message in str()
    return error


class _RawFile(io.FileIO):
    """The unbuffered file under the writer; remembers the first failed write, because
    ``torch.save`` reports an OSError from ``write`` as an unrelated zip-offset RuntimeError."""

    error: OSError | None = None

    def write(self, data) -> int:
        try:
            return _write(self.fileno(), data)
        except OSError as exc:
            self.error = self.error or exc
            raise


def make_dirs(directory: str | os.PathLike) -> Path:
    """``mkdir -p directory``, with a :class:`WriteError` naming it if that is impossible."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"cannot use {directory} as a directory: a file of that name exists; "
                         "choose another directory or remove the file") from None
    except OSError as exc:
        error = WriteError(f"cannot create the directory {directory}: {exc.strerror or exc} (a part of "
                           "the path is read-only, not writable, or a file); choose another directory")
        error.errno = exc.errno
        raise error from None
    return directory


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success flush, fsync and
    ``os.replace`` it onto ``path``. On any error (KeyboardInterrupt included) the partial file
    is removed and whatever was at ``path`` before is untouched. A failure of the write itself
    (full disk, read-only directory) is raised as :class:`WriteError` naming ``path``; an
    exception raised by the caller's own code passes through unchanged."""
    path = Path(path)
    remove_stale_temp_files(path.parent)
    tmp = _temp_path(path)
    try:  # 0o666 minus the umask, like open(): not mkstemp's 0600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise _write_error(exc, path) from None
    raw = _RawFile(fd, "w")
    try:
        with io.BufferedWriter(raw) as fh:  # closing flushes: a failed flush is recorded in raw
            yield fh
            fh.flush()
            try:
                os.fsync(fh.fileno())  # where a full disk shows on filesystems that allocate late
            except OSError as exc:
                raise _write_error(exc, path) from exc
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(exc, path) from exc
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if raw.error is not None and isinstance(exc, Exception) and not isinstance(exc, WriteError):
            raise _write_error(raw.error, path) from raw.error
        raise
    if os.name == "posix":  # make the rename itself durable (directories can't be fsynced on Windows)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_writable(directory: str | os.PathLike, required_bytes: int = 0) -> Path:
    """Fail now, not after the first epoch, if files cannot be written to ``directory``.

    Creates the directory, writes a small probe file through :func:`atomic_open` (fsynced, so a
    full disk shows) and removes it; with ``required_bytes``, also checks that much space is
    free. Raises :class:`WriteError` naming the directory and the fix; returns the directory.
    """
    directory = make_dirs(directory)
    probe = directory / ".zoo-write-probe"
    try:
        with atomic_open(probe) as fh:
            fh.write(b"\0" * 4096)
    except WriteError as exc:
        if exc.errno in _NO_SPACE:
            reason = "no space left on device"
        elif exc.errno in _NOT_WRITABLE:
            reason = "it is read-only or not writable by this user"
        else:
            reason = str(exc)
        error = WriteError(f"cannot write to the output directory {directory}: {reason}; choose "
                           "another directory (e.g. --output-dir) or free space / fix its permissions")
        error.errno = exc.errno
        raise error from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    if required_bytes > 0:
        free = shutil.disk_usage(directory).free
        if free < required_bytes:
            error = WriteError(f"only {free / 2**20:.0f} MiB free on the disk holding {directory}, and "
                               f"about {required_bytes / 2**20:.0f} MiB are needed: free space or choose "
                               "another directory (e.g. --output-dir)")
            error.errno = errno.ENOSPC
            raise error
    return directory


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically, creating its folder (a recipe's
    ``results.json``): a run stopped mid-write leaves the previous file, never half of one."""
    import json

    path = Path(path)
    make_dirs(path.parent)
    with atomic_open(path) as f:
        f.write((json.dumps(obj, indent=2) + "\n").encode())
    return path
