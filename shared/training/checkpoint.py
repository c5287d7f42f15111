"""Atomic checkpoint files.

``save_checkpoint`` never leaves a half-written file under the final name: it
writes a temporary file in the same directory, flushes and fsyncs it, then
renames it over the target with ``os.replace`` (atomic on POSIX and Windows).
A crash at any point leaves either the previous checkpoint or the new one.
A full disk or an unwritable directory is a :class:`~zoo.shared.errors.WriteError`
naming the file (see :mod:`zoo.shared.atomic`).

``load_checkpoint`` uses ``torch.load(weights_only=True)``: a checkpoint can
hold tensors and plain containers of numbers/strings, never pickled code. A
file it cannot load is named with what is wrong with it, as one of the
:class:`~zoo.shared.errors.CheckpointError` subclasses: empty or truncated
(``CorruptCheckpointError``), not a checkpoint at all or not the kind asked for
(``ForeignCheckpointError``), written by a newer version
(``CheckpointFormatError``), or needing code to load (``UnsafeCheckpointError``).
Torch's own advice to retry with ``weights_only=False`` is never passed on.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from ..atomic import atomic_open, make_dirs
from ..errors import (
    CheckpointFormatError,
    CorruptCheckpointError,
    ForeignCheckpointError,
    UnsafeCheckpointError,
)

# Version of the resumable training checkpoint (the "format" entry of last.pt). Bump it when
# the layout changes; load_checkpoint refuses files newer than the reader.
CHECKPOINT_FORMAT = 1

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # torch.save's zip (empty zips start with the end record)
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)  # torch's pre-1.6 format
_START_AGAIN = "use another checkpoint, or start the run again without --resume"


def save_checkpoint(path: str | os.PathLike, obj: dict) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    make_dirs(path.parent)
    with atomic_open(path) as f:
        torch.save(obj, f)
    return path


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device | None = "cpu",
    *,
    expected_format: int | None = None,
) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    ``expected_format``: the newest ``"format"`` the caller can read (the trainer's resume passes
    :data:`CHECKPOINT_FORMAT`); the file must then be a training checkpoint carrying that entry.
    Without it any dict loads, but one whose integer ``"format"`` is newer than
    :data:`CHECKPOINT_FORMAT` is still refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CorruptCheckpointError(
            f"{path} is empty (0 bytes), not a checkpoint: it was cut off by a copy or a full disk "
            f"(save_checkpoint never leaves a partial file); {_START_AGAIN}."
        )
    if head.startswith(_ZIP_MAGIC):
        _check_torch_zip(path)
    elif not (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):  # nor a pickle (torch < 1.6)
        raise ForeignCheckpointError(
            f"{path} is not a checkpoint: it is neither the zip archive that torch.save writes nor "
            f"a pickle; it holds {_describe(head)}; {_START_AGAIN}."
        )
    try:
        with warnings.catch_warnings():  # torch asks to "file an issue" for protocol-4 pickles it refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # UnpicklingError, RuntimeError from the zip reader, EOFError, ...
        _raise_load_error(path, head, exc)
    return _check_contents(path, obj, expected_format)


def _check_torch_zip(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CorruptCheckpointError(
            f"{path} is truncated or corrupted: it starts like a zip archive (as torch.save writes) "
            f"but its {path.stat().st_size} bytes have no readable end: it was cut off, probably by a "
            f"copy or a full disk; {_START_AGAIN}."
        ) from None
    if not any(name.split("/")[-1] == "data.pkl" for name in names):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else "no files"
        raise ForeignCheckpointError(
            f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl; it holds {shown}); "
            f"{_START_AGAIN}."
        )


def _raise_load_error(path: Path, head: bytes, exc: Exception):
    """Say why torch.load failed: code the file needs, a damaged file, or not a torch file."""
    written_by_torch = head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_MAGIC)
    names, readable = _code_globals(path, zipped=head.startswith(_ZIP_MAGIC))
    found = re.search(r"GLOBAL (\S+)", str(exc))  # torch names the global it refused
    refused = found.group(1) if found else None
    # in a pickle stream cut off mid-name, torch refuses the stub of its own name: that is damage
    if refused and refused not in names and (head.startswith(_ZIP_MAGIC) or not _is_torch(refused)):
        names.insert(0, refused)
    if names:
        raise UnsafeCheckpointError(
            f"Refused to load {path}: it contains pickled Python objects ({', '.join(names[:5])}) that "
            "would run code when loaded, and checkpoints are loaded as tensors and plain data only "
            "(torch.load(weights_only=True)). Nothing in the file was executed. save_checkpoint never "
            f"writes such objects: the file comes from other code; {_START_AGAIN}."
        ) from None
    if written_by_torch:
        raise CorruptCheckpointError(
            f"{path} is truncated or corrupted and cannot be read{_detail(exc)}; {_START_AGAIN}."
        ) from None
    what = "a plain Python pickle (pickle.dump)" if readable else "bytes that start like a pickle"
    raise ForeignCheckpointError(
        f"{path} is not a checkpoint written by torch.save: it holds {what}; {_START_AGAIN}."
    ) from None


def _is_torch(name: str) -> bool:
    return name == "collections.OrderedDict" or name.startswith("torch.")


def _code_globals(path: Path, zipped: bool) -> tuple[list[str], bool]:
    """The non-torch globals (module.name) the file's pickle imports, read with pickletools so
    nothing runs, and whether that pickle was read to its end."""
    names, strings = [], []
    try:
        with contextlib.ExitStack() as stack:
            if zipped:
                archive = stack.enter_context(zipfile.ZipFile(path))
                member = next(n for n in archive.namelist() if n.split("/")[-1] == "data.pkl")
                f = stack.enter_context(archive.open(member))
            else:
                f = stack.enter_context(open(path, "rb"))
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL":
                    names.append(".".join(strings[-2:]))
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:
        return [n for n in names if not _is_torch(n)], False
    return [n for n in names if not _is_torch(n)], True


def _detail(exc: Exception) -> str:
    """The first sentence of torch's message, without its advice (never ``weights_only=False``)."""
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", str(exc).strip().split("\n")[0])
    text = text.split(". ")[0].strip().rstrip(".")
    if not text or "weights_only" in text or "weights only" in text.lower():
        return ""
    return f" ({type(exc).__name__}: {text[:200]})"


def _describe(head: bytes) -> str:
    if not head.strip(b"\0"):
        return "only zero bytes at its start"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON text"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unrecognised binary data (starting {head[:8].hex(' ')})"
    if text.isprintable() or text.strip().isprintable():
        return f"text ({text.strip()[:16]!r}...)"
    return f"unrecognised binary data (starting {head[:8].hex(' ')})"


def _check_contents(path: Path, obj, expected_format: int | None) -> dict:
    if not isinstance(obj, Mapping):
        raise ForeignCheckpointError(
            f"{path} holds a {type(obj).__name__}, not a checkpoint (a dict such as save_checkpoint "
            f"writes); {_START_AGAIN}."
        )
    newest = CHECKPOINT_FORMAT if expected_format is None else expected_format
    if "format" not in obj:
        if expected_format is not None:
            keys = ", ".join(map(str, list(obj)[:6])) + (", ..." if len(obj) > 6 else "")
            looks = (" It looks like a model state dict: load it as weights (pretrained=...) and start "
                     "a new run." if obj and all(isinstance(v, torch.Tensor) for v in obj.values()) else "")
            raise ForeignCheckpointError(
                f"{path} is not a training checkpoint: it has no 'format' entry (its keys: "
                f"{keys or 'none'}), so it was not written by Trainer.save_checkpoint.{looks}"
            )
        return obj
    fmt = obj["format"]
    if isinstance(fmt, torch.Tensor) and expected_format is None:
        return obj  # a state dict with a parameter named "format", not our entry
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CheckpointFormatError(
            f"{path} has an unknown checkpoint format {fmt!r} (this version reads formats up to "
            f"{newest}); {_START_AGAIN}."
        )
    if fmt > newest:
        raise CheckpointFormatError(
            f"{path} was written by a newer version of the zoo (checkpoint format {fmt}; this version "
            f"reads formats up to {newest}): update the zoo to resume it, or start the run again."
        )
    return obj
