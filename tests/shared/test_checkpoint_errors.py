"""load_checkpoint (behind --resume) on files that are not a good checkpoint: each names the file
and the problem, with a CheckpointError subclass, and never passes on torch's advice to retry
with weights_only=False (shared/training/checkpoint.py)."""

import io
import json
import os
import pickle
import random
import zipfile

import pytest
import torch

from zoo.shared.errors import (
    CheckpointError,
    CheckpointFormatError,
    CorruptCheckpointError,
    ForeignCheckpointError,
    UnsafeCheckpointError,
)
from zoo.shared.training import load_checkpoint, save_checkpoint
from zoo.shared.training.checkpoint import CHECKPOINT_FORMAT


def _good(tmp_path, **extra) -> bytes:
    path = tmp_path / "good.pt"
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": {"w": torch.randn(64)}, **extra})
    return path.read_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


class Payload:
    """Would create a marker file if unpickling ran its code."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _random_bytes(seed: int) -> bytes:
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(4096))
    return data if not data.startswith((b"PK", b"\x80")) else b"\x01" + data  # random, not a magic


def _corrupt_data_pkl(good: bytes) -> bytes:
    start = good.index(b"data.pkl") + len(b"data.pkl") + 4  # into the pickle's bytes
    return good[:start] + b"\xff" * 16 + good[start + 16:]


# (case id, how to make the file from a good checkpoint's bytes, error type, words the message has)
CASES = [
    ("empty", lambda good: b"", CorruptCheckpointError, "is empty (0 bytes)"),
    ("truncated-half", lambda good: good[: len(good) // 2], CorruptCheckpointError, "truncated"),
    ("truncated-header", lambda good: good[:10], CorruptCheckpointError, "truncated"),
    ("truncated-last-bytes", lambda good: good[:-30], CorruptCheckpointError, "truncated"),
    ("corrupt-data.pkl", _corrupt_data_pkl, CorruptCheckpointError, "corrupted"),
    ("json", lambda good: json.dumps({"epoch": 3}).encode(), ForeignCheckpointError, "holds JSON text"),
    ("text", lambda good: b"hello world\n", ForeignCheckpointError, "holds text ('hello world'"),
    ("zeros", lambda good: bytes(4096), ForeignCheckpointError, "holds only zero bytes"),
    ("one-byte", lambda good: b"\x80", ForeignCheckpointError, "not a checkpoint: it is neither"),
    ("random-0", lambda good: _random_bytes(0), ForeignCheckpointError, "not a checkpoint: it is neither"),
    ("random-1", lambda good: _random_bytes(1), ForeignCheckpointError, "unrecognised binary data"),
    ("random-2", lambda good: _random_bytes(2), ForeignCheckpointError, "unrecognised binary data"),
    ("zip-not-torch", lambda good: _zip({"hello.txt": b"hi"}), ForeignCheckpointError,
     "zip archive but not a PyTorch checkpoint"),
    ("zip-with-bad-data.pkl", lambda good: _zip({"archive/data.pkl": b"\x80\x02garbage", "archive/version": b"3"}),
     CorruptCheckpointError, "corrupted"),
    ("plain-pickle", lambda good: pickle.dumps({"epoch": 3}), ForeignCheckpointError, "plain Python pickle"),
    ("plain-pickle-protocol-2", lambda good: pickle.dumps({"epoch": 3}, protocol=2), ForeignCheckpointError,
     "plain Python pickle"),
]


@pytest.mark.parametrize("make, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_files_name_the_file_and_the_problem(tmp_path, recwarn, make, error, words):
    path = tmp_path / "last.pt"
    path.write_bytes(make(_good(tmp_path)))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, expected_format=CHECKPOINT_FORMAT)
    assert type(info.value) is error, str(info.value)
    message = str(info.value)
    assert str(path) in message and words in message
    _no_torch_advice(info.value)
    assert "pickled" not in message  # a damaged or foreign file is not "pickled code"
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]  # torch's "file an issue"


def _no_torch_advice(exc: Exception):
    message = str(exc)
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "weights_only=True" in message or "weights_only" not in message  # ours names only True
    assert exc.__cause__ is None  # torch's message is not chained either
    assert exc.__context__ is None or exc.__suppress_context__


def test_files_that_need_code_are_refused_and_nothing_runs(tmp_path):
    Payload.marker = str(tmp_path / "ran")
    for name, write in [
        ("torch-zip.pt", lambda p: torch.save({"format": 1, "x": Payload()}, p)),
        ("pickle.pt", lambda p: p.write_bytes(pickle.dumps({"x": Payload()}))),
        ("pickle-protocol-2.pt", lambda p: p.write_bytes(pickle.dumps({"x": Payload()}, protocol=2))),
        ("module.pt", lambda p: torch.save(torch.nn.Linear(2, 2), p)),
    ]:
        write(tmp_path / name)
        with pytest.raises(UnsafeCheckpointError) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert str(tmp_path / name) in message and "pickled Python objects" in message, message
        assert "Nothing in the file was executed" in message
        _no_torch_advice(info.value)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("expected_format", [None, CHECKPOINT_FORMAT])
def test_a_newer_format_is_refused_with_both_numbers(tmp_path, expected_format):
    path = tmp_path / "last.pt"
    torch.save({"format": CHECKPOINT_FORMAT + 1, "model": {}}, path)
    with pytest.raises(CheckpointFormatError) as info:
        load_checkpoint(path, expected_format=expected_format)
    message = str(info.value)
    assert str(path) in message and "newer version" in message
    assert f"format {CHECKPOINT_FORMAT + 1}" in message and f"up to {CHECKPOINT_FORMAT}" in message


@pytest.mark.parametrize("value", ["one", 1.5, True, 0, None])
def test_an_unknown_format_value_is_refused(tmp_path, value):
    path = tmp_path / "last.pt"
    torch.save({"format": value, "model": {}}, path)
    with pytest.raises(CheckpointFormatError, match=f"{path}.* unknown checkpoint format {value!r}"):
        load_checkpoint(path, expected_format=CHECKPOINT_FORMAT)


def test_resume_needs_a_training_checkpoint(tmp_path):
    state_dict = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), state_dict)
    with pytest.raises(ForeignCheckpointError) as info:
        load_checkpoint(state_dict, expected_format=CHECKPOINT_FORMAT)
    message = str(info.value)
    assert str(state_dict) in message and "not a training checkpoint" in message
    assert "weight, bias" in message and "model state dict" in message
    best = tmp_path / "best.pt"  # the trainer's best.pt: weights and a metric, no format
    save_checkpoint(best, {"model": {"w": torch.ones(2)}, "value": 0.5})
    with pytest.raises(ForeignCheckpointError, match="no 'format' entry .its keys: model, value"):
        load_checkpoint(best, expected_format=CHECKPOINT_FORMAT)
    # without expected_format both load: best.pt and plain state dicts are read this way
    assert load_checkpoint(best)["value"] == 0.5
    assert set(load_checkpoint(state_dict)) == {"weight", "bias"}


def test_a_file_that_is_no_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    torch.save(torch.ones(3), path)
    with pytest.raises(ForeignCheckpointError, match=f"{path} holds a Tensor, not a checkpoint"):
        load_checkpoint(path)


def test_good_checkpoints_still_load(tmp_path):
    _good(tmp_path, optimizer={"lr": 0.1})
    ckpt = load_checkpoint(tmp_path / "good.pt", expected_format=CHECKPOINT_FORMAT)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["optimizer"] == {"lr": 0.1}
    legacy = tmp_path / "legacy.pt"  # torch's pre-1.6 format still loads
    torch.save({"format": 1, "w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint(legacy, expected_format=1)["w"], torch.ones(2))
    data = legacy.read_bytes()
    legacy.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match=f"{legacy} is truncated or corrupted"):
        load_checkpoint(legacy)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
