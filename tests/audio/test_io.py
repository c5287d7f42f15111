"""Audio reading (errors naming the file on files the test writes), mono mixing, resampling with a
notice, fixed lengths and padded batches with masks."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from zoo.audio.io import fix_length, lengths_to_mask, load_audio, load_clips, pad_batch, read_audio
from zoo.shared.errors import DatasetError, InputError


def write(path, seconds=0.25, rate=8000, channels=1, fmt=None, subtype="PCM_16"):
    rng = np.random.default_rng(0)
    data = (0.2 * rng.standard_normal((int(seconds * rate), channels))).astype("float32")
    sf.write(str(path), data, rate, format=fmt, subtype=subtype)
    return data


@pytest.mark.parametrize("suffix,fmt,subtype", [(".wav", "WAV", "PCM_16"), (".flac", "FLAC", "PCM_16"),
                                                (".ogg", "OGG", "VORBIS")])
def test_reads_wav_flac_ogg(tmp_path, suffix, fmt, subtype):
    data = write(tmp_path / f"a{suffix}", fmt=fmt, subtype=subtype)
    waveform, rate = read_audio(tmp_path / f"a{suffix}")
    assert rate == 8000 and waveform.shape == (1, len(data)) and waveform.dtype == torch.float32
    if fmt != "OGG":  # lossless: the samples come back (to 16-bit precision)
        torch.testing.assert_close(waveform[0], torch.from_numpy(data[:, 0]), atol=1 / 32768, rtol=0)


def test_stereo_is_mixed_to_mono_and_resampled(tmp_path):
    data = write(tmp_path / "st.wav", rate=16000, channels=2)
    mono, rate = load_audio(tmp_path / "st.wav", sample_rate=8000)
    assert rate == 16000
    expected = AF.resample(torch.from_numpy(data.T.copy()).mean(0), 16000, 8000)
    torch.testing.assert_close(mono, expected, atol=1e-4, rtol=0)  # file holds 16-bit samples
    assert mono.shape == (len(data) // 2,)


def test_mixed_rates_are_resampled_and_said(tmp_path):
    write(tmp_path / "a.wav", rate=8000)
    write(tmp_path / "b.wav", rate=16000)
    write(tmp_path / "c.wav", rate=22050)
    with pytest.warns(UserWarning, match=r"resampled 2 of 3 files to 8000 Hz \(1 at 16000 Hz, 1 at 22050 Hz\)"):
        clips = load_clips(sorted(tmp_path.glob("*.wav")), 8000)
    assert [len(c) for c in clips] == [2000, 2000, 2000]


def test_same_rate_folder_says_nothing(tmp_path, recwarn):
    write(tmp_path / "a.wav")
    load_clips([tmp_path / "a.wav"], 8000)
    assert not [w for w in recwarn if "resampled" in str(w.message)]


def test_truncated_wav_is_an_error_naming_the_file(tmp_path):
    write(tmp_path / "ok.wav")
    raw = (tmp_path / "ok.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[: len(raw) // 2])  # libsndfile alone would read half and say nothing
    with pytest.raises(DatasetError, match=r"cut\.wav: truncated audio file \(its data chunk declares"):
        read_audio(tmp_path / "cut.wav")


def test_empty_and_corrupt_files_are_errors_naming_the_file(tmp_path):
    write(tmp_path / "ok.wav")
    sf.write(str(tmp_path / "empty.wav"), np.zeros((0, 1), dtype="float32"), 8000)  # a valid file of 0 samples
    with pytest.raises(DatasetError, match=r"empty\.wav: empty audio file"):
        read_audio(tmp_path / "empty.wav")
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"zero\.wav: not a readable audio file"):
        read_audio(tmp_path / "zero.wav")
    (tmp_path / "junk.flac").write_bytes(b"not audio at all" * 8)
    with pytest.raises(DatasetError, match=r"junk\.flac: not a readable audio file"):
        read_audio(tmp_path / "junk.flac")
    with pytest.raises(DatasetError, match=r"missing\.wav: no such audio file"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(DatasetError, match=r"empty\.wav"):  # a folder read names the bad file too
        load_clips([tmp_path / "ok.wav", tmp_path / "empty.wav"], 8000)


def test_fix_length_crops_and_pads():
    x = torch.arange(1.0, 6.0)
    assert fix_length(x, 3).tolist() == [1, 2, 3]
    assert fix_length(x, 3, offset=2).tolist() == [3, 4, 5]
    assert fix_length(x, 7).tolist() == [1, 2, 3, 4, 5, 0, 0]
    with pytest.raises(InputError, match="length must be >= 1"):
        fix_length(x, 0)


def test_pad_batch_and_mask():
    batch, lengths = pad_batch([torch.ones(3), torch.ones(5), torch.ones(1)])
    assert batch.shape == (3, 5) and lengths.tolist() == [3, 5, 1]
    mask = lengths_to_mask(lengths)
    assert mask.tolist() == [[True] * 3 + [False] * 2, [True] * 5, [True] + [False] * 4]
    assert torch.equal(batch, mask.float())  # valid samples kept, padding is zeros
    with pytest.raises(InputError, match="no clips"):
        pad_batch([])
