"""The atomic writer on disk: permissions from the umask, no temp files left by killed writers,
a full disk or an unwritable directory reported by name (shared/atomic.py)."""

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.error
from pathlib import Path

import pytest
import torch

from zoo.shared import atomic
from zoo.shared.atomic import atomic_open, check_writable, remove_stale_temp_files
from zoo.shared.errors import WriteError
from zoo.shared.training import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[2]

# A writer that stops in the middle of a write and waits to be killed.
SLOW_WRITER = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from zoo.shared.atomic import atomic_open
with atomic_open(sys.argv[1]) as fh:
    fh.write(b"x" * 100_000)
    fh.flush()
    print("writing", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- permissions


def test_atomic_files_get_the_umask_permissions(tmp_path, umask):
    with atomic_open(tmp_path / "plain.bin") as fh:
        fh.write(b"data")
    save_checkpoint(tmp_path / "last.pt", {"w": torch.ones(2)})
    for name in ("plain.bin", "last.pt"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name  # 0o644 / 0o600, as open() gives


def test_save_pretrained_output_gets_the_umask_permissions(tmp_path, umask):
    import zoo

    zoo.save_pretrained(zoo.create("resnet18", base_channels=8), tmp_path / "out")
    for name in ("model.safetensors", "config.json"):
        assert _mode(tmp_path / "out" / name) == 0o666 & ~umask, name


def test_downloads_get_the_umask_permissions(tmp_path, umask):
    from zoo.graph.data import PLANETOID_SUFFIXES, download_planetoid

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for suffix in PLANETOID_SUFFIXES:
        (mirror / f"ind.cora.{suffix}").write_bytes(b"raw")
    download_planetoid("cora", tmp_path / "cache", base_url=mirror.as_uri())
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == len(PLANETOID_SUFFIXES)
    assert {_mode(p) for p in files} == {0o666 & ~umask}


# --------------------------------------------------------------------------- killed writers


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_a_later_write_removes_temp_files_of_dead_writers_only(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        host = atomic._HOST
        dead = f".last.pt.{host}.{_dead_pid()}.0123abcd.tmp"
        kept = [
            f".last.pt.{host}.{os.getpid()}.0123abcd.tmp",  # this process: a write in progress
            f".last.pt.{host}.{sleeper.pid}.0123abcd.tmp",  # a live writer
            f".last.pt.otherhost.{_dead_pid()}.0123abcd.tmp",  # another machine sharing the folder
            ".last.pt.k2j4_9xq.tmp",  # an older writer's name, without a pid
            "notes.tmp",  # the user's
        ]
        for name in [dead, *kept]:
            (tmp_path / name).write_bytes(b"partial")
        save_checkpoint(tmp_path / "last.pt", {"w": torch.ones(2)})
        assert _temp_files(tmp_path) == sorted(kept)
        assert remove_stale_temp_files(tmp_path) == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_writers_killed_mid_write_leave_nothing_after_the_next_write(tmp_path):
    """A run killed during checkpointing, again and again: the temp files do not pile up."""
    target = tmp_path / "last.pt"
    for _ in range(3):
        writer = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "writing"
            partial = f".{writer.pid}."
            save_checkpoint(tmp_path / "other.pt", {"w": torch.ones(2)})
            # the live writer's file is kept; the one of the writer killed before is gone
            files = _temp_files(tmp_path)
            assert len(files) == 1 and partial in files[0]
            assert (tmp_path / files[0]).stat().st_size == 100_000
        finally:
            writer.kill()
            writer.wait()
            writer.stdout.close()
    assert len(_temp_files(tmp_path)) == 1
    save_checkpoint(target, {"w": torch.ones(2)})
    assert _temp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "other.pt"]


# --------------------------------------------------------------------------- full disk


def _disk_full_after(limit: int):
    """A replacement for the writer's low-level write: the disk fills after ``limit`` bytes."""
    written = [0]

    def write(fd, data):
        if written[0] + len(data) > limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, data)
        written[0] += n
        return n

    return write


@pytest.mark.parametrize("limit", [0, 1000, 100_000])
def test_full_disk_while_checkpointing_names_the_file(tmp_path, monkeypatch, limit):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"w": torch.zeros(4)})
    monkeypatch.setattr(atomic, "_write", _disk_full_after(limit))
    with pytest.raises(WriteError) as info:
        save_checkpoint(path, {"w": torch.randn(100_000)})  # 400 KB: more than fits
    message = str(info.value)
    assert message.startswith(f"no space left on device writing {path}")
    assert "unexpected pos" not in message and "inline_container" not in message  # torch's zip writer
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.zeros(4))  # the previous checkpoint stands
    assert _temp_files(tmp_path) == []


def test_full_disk_at_fsync_names_the_file(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(WriteError, match=f"no space left on device writing {tmp_path / 'f.bin'}"):
        with atomic_open(tmp_path / "f.bin") as fh:
            fh.write(b"data")
    assert not (tmp_path / "f.bin").exists() and _temp_files(tmp_path) == []


def test_errors_of_the_callers_own_code_pass_through(tmp_path):
    # zoo.graph.data downloads inside atomic_open: a network error is not a write error
    with pytest.raises(urllib.error.URLError) as info:
        with atomic_open(tmp_path / "f.bin"):
            raise urllib.error.URLError("no network")
    assert not isinstance(info.value, WriteError)
    with pytest.raises(PermissionError) as info:
        with atomic_open(tmp_path / "f.bin"):
            raise PermissionError(errno.EACCES, "reading some other file")
    assert not isinstance(info.value, WriteError)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- unwritable directories


def _read_only_tmp(monkeypatch):
    """Make creating the writer's temp files fail as on a read-only mount (we may run as root,
    for whom chmod does not make a directory read-only)."""
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", fake_open)


def test_check_writable_creates_the_directory_and_leaves_nothing(tmp_path):
    out = tmp_path / "runs" / "r1"
    assert check_writable(out) == out
    assert out.is_dir() and list(out.iterdir()) == []


def test_check_writable_on_a_read_only_directory(tmp_path, monkeypatch):
    _read_only_tmp(monkeypatch)
    with pytest.raises(WriteError) as info:
        check_writable(tmp_path)
    message = str(info.value)
    assert f"output directory {tmp_path}" in message and "read-only" in message
    assert "another directory" in message and info.value.errno == errno.EROFS
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'last.pt'}.*read-only"):
        save_checkpoint(tmp_path / "last.pt", {"w": torch.ones(2)})


def test_check_writable_on_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_write", _disk_full_after(0))
    with pytest.raises(WriteError, match=f"output directory {tmp_path}: no space left on device"):
        check_writable(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_check_writable_asks_for_free_space(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(WriteError, match=f"MiB free on the disk holding {tmp_path}"):
        check_writable(tmp_path, required_bytes=free + 2**40)
    check_writable(tmp_path, required_bytes=1)


def test_check_writable_where_a_file_is_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match=f"cannot use {tmp_path / 'file'} as a directory"):
        check_writable(tmp_path / "file")
    with pytest.raises(WriteError, match=f"cannot create the directory {tmp_path / 'file' / 'sub'}"):
        check_writable(tmp_path / "file" / "sub")
    with pytest.raises(WriteError, match=f"cannot use {tmp_path / 'file'} as a directory"):
        save_checkpoint(tmp_path / "file" / "last.pt", {"w": torch.ones(2)})


CHECK_AS_USER = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from zoo.shared.atomic import check_writable
from zoo.shared.errors import WriteError
for target in sys.argv[1:]:
    try:
        check_writable(target)
        print("writable")
    except WriteError as exc:
        print(f"WriteError {{exc.errno}} {{exc}}")
"""


def _run_as_nobody(code: str, *args: str):
    """Run ``code`` as an unprivileged user (as root: uid 65534 with an interpreter it can reach,
    the venv's may live under /root); None if that is impossible here."""
    if os.geteuid() != 0:
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    for python in (sys.executable, "/usr/bin/python3"):  # the module under test needs only the stdlib
        try:
            out = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=60,
                                 cwd="/", user=65534, group=65534, extra_groups=[])
        except OSError:
            continue
        if out.returncode == 0:
            return out
    return None


def test_check_writable_with_real_permissions():
    """chmod 0o555 stops any user but root, so as root the check runs as `nobody`."""
    base = Path(tempfile.mkdtemp())  # not under tmp_path: pytest's base is private to its user
    try:
        os.chmod(base, 0o755)
        (base / "ro").mkdir()
        os.chmod(base / "ro", 0o555)
        out = _run_as_nobody(CHECK_AS_USER, str(base / "ro"), str(base / "ro" / "sub"))
        if out is None:
            pytest.skip("cannot run a process as an unprivileged user here")
        ro, sub = out.stdout.splitlines()
        assert ro.startswith(f"WriteError {errno.EACCES} cannot write to the output directory {base / 'ro'}")
        assert "not writable" in ro
        assert sub.startswith(f"WriteError {errno.EACCES} cannot create the directory {base / 'ro' / 'sub'}")
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base)


def test_write_json_creates_the_folder_and_replaces_the_file_whole(tmp_path, monkeypatch):
    import json

    from zoo.shared.atomic import write_json

    path = write_json(tmp_path / "run" / "results.json", {"f1": 0.5})
    assert json.loads(path.read_text()) == {"f1": 0.5}

    def broken(obj, indent=None):
        raise RuntimeError("stopped mid-write")

    monkeypatch.setattr(json, "dumps", broken)
    with pytest.raises(RuntimeError):
        write_json(path, {"f1": 0.9})
    assert path.read_text() == "{\n  \"f1\": 0.5\n}\n"
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left
