"""FSDD file names and splits: official (no recording in two splits, test = indexes 0-4), speaker held
out; errors on a bad folder; waveform augmentation."""

import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.audio.fsdd import Augment, DigitClips, list_recordings, official_split, speaker_split
from zoo.shared.errors import DatasetError


def fsdd_folder(tmp_path, speakers=("ana", "bob"), indexes=(0, 5, 10), seconds=0.2):
    folder = tmp_path / "recordings"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for s in speakers:
        for d in range(10):
            for i in indexes:
                sf.write(str(folder / f"{d}_{s}_{i}.wav"), (0.1 * rng.standard_normal(int(8000 * seconds))).astype("float32"),
                         8000)
    return folder


@pytest.fixture
def real_recordings(shared_data):
    folder = shared_data / "fsdd" / "recordings"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return list_recordings(folder)


def test_official_split_on_the_real_recordings(real_recordings):
    splits = official_split(real_recordings)
    assert {k: len(v) for k, v in splits.items()} == {"train": 2400, "val": 300, "test": 300}
    paths = {k: {r.path for r in v} for k, v in splits.items()}
    assert not (paths["train"] & paths["test"]) and not (paths["val"] & paths["test"]) \
        and not (paths["train"] & paths["val"])
    assert set().union(*paths.values()) == {r.path for r in real_recordings}
    assert {r.index for r in splits["test"]} == set(range(5))
    assert min(r.index for r in splits["train"] + splits["val"]) == 5  # FSDD's train set: 5-49
    speakers = {r.speaker for r in real_recordings}
    assert len(speakers) == 6
    for split in splits.values():  # every speaker and digit on every side
        assert {(r.speaker, r.digit) for r in split} == {(s, d) for s in speakers for d in range(10)}


def test_speaker_split_holds_each_speaker_out(real_recordings):
    for speaker in sorted({r.speaker for r in real_recordings}):
        splits = speaker_split(real_recordings, speaker)
        assert {r.speaker for r in splits["test"]} == {speaker} and len(splits["test"]) == 500
        assert speaker not in {r.speaker for r in splits["train"] + splits["val"]}
        assert not ({r.path for r in splits["train"]} & {r.path for r in splits["val"]})


def test_file_names_and_words(tmp_path):
    recordings = list_recordings(fsdd_folder(tmp_path))
    first = recordings[0]
    assert (first.digit, first.speaker, first.index, first.word) == (0, "ana", 0, "zero")
    assert len(recordings) == 60
    with pytest.raises(DatasetError, match="'carl' is not in the data \\(speakers: ana, bob\\)"):
        speaker_split(recordings, "carl")


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(DatasetError, match="no such folder; pass --data DIR"):
        list_recordings(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .wav recordings"):
        list_recordings(tmp_path / "empty")
    folder = fsdd_folder(tmp_path, speakers=("ana",), indexes=(0,))
    (folder / "notes.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match="notes.wav: not an FSDD file name"):
        list_recordings(folder)


def test_augment_shifts_scales_and_adds_noise():
    torch.manual_seed(0)
    clip = torch.ones(100)
    shifted = Augment(gain_db=0.0, noise_prob=0.0)(clip, 300)
    assert shifted.shape == (300,) and shifted.sum() == 100 and shifted.nonzero().squeeze().diff().eq(1).all()
    starts = {int(Augment(gain_db=0.0, noise_prob=0.0)(clip, 300).nonzero()[0]) for _ in range(10)}
    assert len(starts) > 1  # a random place each time
    gains = {round(float(Augment(gain_db=6.0, noise_prob=0.0)(clip, 100).max()), 4) for _ in range(10)}
    assert len(gains) > 1 and all(10 ** (-6 / 20) - 1e-6 <= g <= 10 ** (6 / 20) + 1e-6 for g in gains)
    noisy = Augment(gain_db=0.0, noise_prob=1.0, snr_db=(20.0, 20.0))(clip, 100)
    snr = 10 * torch.log10(clip.square().mean() / (noisy - clip).square().mean())
    assert abs(float(snr) - 20.0) < 0.01
    long_clip = torch.arange(500.0)
    cropped = Augment(gain_db=0.0, noise_prob=0.0)(long_clip, 200)
    assert cropped.shape == (200,) and cropped.diff().eq(1).all()


def test_digit_clips_fixed_and_whole(tmp_path):
    recordings = list_recordings(fsdd_folder(tmp_path, speakers=("ana",), indexes=(0,)))
    fixed = DigitClips(recordings, length=8000)
    x, y = fixed[3]
    assert x.shape == (8000,) and y == 3 and x[1600:].abs().sum() == 0  # 0.2 s of audio, zero-padded
    whole = DigitClips(recordings, length=None, clips=fixed.clips)
    x, word = whole[7]
    assert x.shape == (1600,) and word == "seven"
