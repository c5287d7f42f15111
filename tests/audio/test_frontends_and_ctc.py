"""Front ends inside the models equal torchaudio's transforms run directly; SpecAugment masks in
training only; greedy CTC decoding on hand cases; the loss is PyTorch's; CER."""

import pytest
import torch
import torch.nn.functional as F
import torchaudio.transforms as T

import zoo
from zoo.audio.ctc import Alphabet, character_error_rate, ctc_loss, greedy_decode
from zoo.audio.frontends import LogMel, MFCCFrontEnd, SpecAugment
from zoo.shared.errors import InputError


def test_mel_cnn_front_end_is_torchaudios_mel_spectrogram_in_db():
    torch.manual_seed(0)
    model = zoo.create("mel_cnn").eval()
    x = 0.1 * torch.randn(2, 8000)
    mel = T.MelSpectrogram(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40, power=2.0)
    reference = T.AmplitudeToDB(stype="power", top_db=80.0)(mel(x))
    with torch.no_grad():
        torch.testing.assert_close(model.frontend(x), reference)
        standardised = (reference - reference.mean(dim=(1, 2), keepdim=True)) / (
            reference.std(dim=(1, 2), keepdim=True) + 1e-5)
        torch.testing.assert_close(model.spectrogram(x), standardised)


def test_mfcc_front_end_is_torchaudios():
    x = 0.1 * torch.randn(2, 4000)
    ours = MFCCFrontEnd(8000, n_mfcc=13, n_fft=256, hop_length=80, n_mels=40)
    reference = T.MFCC(sample_rate=8000, n_mfcc=13, log_mels=False, melkwargs=dict(n_fft=256, hop_length=80, n_mels=40))
    torch.testing.assert_close(ours(x), reference(x))


def test_front_end_travels_with_a_saved_model(tmp_path):
    model = zoo.create("mel_cnn", sample_rate=16000, n_mels=32, channels=[4, 8]).eval()
    zoo.save_pretrained(model, tmp_path / "m")
    again = zoo.from_pretrained(tmp_path / "m").eval()
    assert again.frontend.mel.sample_rate == 16000 and again.frontend.mel.n_mels == 32
    x = 0.1 * torch.randn(1, 16000)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_specaugment_masks_in_training_only():
    torch.manual_seed(0)
    aug = SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_width=5)
    spec = torch.randn(4, 20, 30) + 10
    aug.train()
    masked = aug(spec)
    assert (masked == 0).any() and masked.shape == spec.shape
    zeros = [(m == 0).nonzero()[:, 1:].unique(dim=0).shape[0] for m in masked]
    assert len(set(zeros)) > 1  # a different mask per example
    aug.eval()
    assert torch.equal(aug(spec), spec)


def test_classifiers_refuse_bad_waveforms():
    model = zoo.create("m5", channels=[4, 4, 8, 8]).eval()
    with pytest.raises(InputError, match="mono waveforms of shape \\(batch, time\\)"):
        model(torch.randn(2, 2, 4000))
    with pytest.raises(InputError, match="divide 16-bit samples by 32768"):
        model(torch.zeros(2, 4000, dtype=torch.int16))
    assert model(torch.randn(2, 1, 4000)).shape == (2, 10)  # (batch, 1, time) is accepted


def test_log_mel_of_a_batch_equals_items_alone():
    front = LogMel(8000, n_fft=256, hop_length=80, n_mels=40)
    x = 0.1 * torch.randn(3, 4000)
    x[1] *= 100  # top_db clamps per item, so one loud item does not change another
    torch.testing.assert_close(front(x)[0], front(x[:1])[0])


# ------------------------------------------------------------------------------------------------
# CTC
# ------------------------------------------------------------------------------------------------


def one_hot_path(path, labels=5):
    return F.one_hot(torch.tensor(path), labels).float()[None]


@pytest.mark.parametrize("path,expected", [
    ([0, 1, 1, 0, 2, 2, 2, 0], [1, 2]),  # repeats collapse, blanks drop
    ([1, 0, 1], [1, 1]),  # a blank between two equal labels keeps both
    ([1, 1, 1], [1]),
    ([0, 0, 0], []),
    ([3, 4, 3, 0, 0, 4], [3, 4, 3, 4]),
])
def test_greedy_decode_hand_cases(path, expected):
    assert greedy_decode(one_hot_path(path)) == [expected]


def test_greedy_decode_stops_at_each_length():
    logits = torch.cat([one_hot_path([1, 0, 2, 2]), one_hot_path([3, 3, 4, 1])])
    assert greedy_decode(logits, torch.tensor([4, 2])) == [[1, 2], [3]]
    with pytest.raises(InputError, match="batch, frames, labels"):
        greedy_decode(torch.zeros(4, 5))


def test_alphabet_round_trip_and_errors():
    a = Alphabet()
    assert a.num_labels == 27 and a.encode("seven") == [19, 5, 22, 5, 14] and a.decode(a.encode("seven")) == "seven"
    assert a.decode([0, 19, 0]) == "s"
    with pytest.raises(InputError, match="outside the alphabet: \\['7'\\]"):
        a.encode("7even")


def test_ctc_loss_is_pytorchs():
    torch.manual_seed(0)
    logits = torch.randn(2, 12, 6, requires_grad=True)
    lengths = torch.tensor([12, 9])
    targets = [[1, 2, 2, 3], [4, 5]]
    expected = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), torch.tensor([1, 2, 2, 3, 4, 5]), lengths,
                          torch.tensor([4, 2]), blank=0, reduction="mean")
    torch.testing.assert_close(ctc_loss(logits, lengths, targets), expected)


def test_character_error_rate():
    assert character_error_rate(["seven", "two"], ["seven", "two"]) == 0.0
    assert character_error_rate(["sven", "tow"], ["seven", "two"]) == pytest.approx(3 / 8)  # 1 + 2 edits


def test_mel_ctc_padded_batch_equals_items_alone():
    torch.manual_seed(0)
    model = zoo.create("mel_ctc", n_mels=16, channels=4, hidden_dim=8, dilations=[1, 2]).eval()
    clips = [0.1 * torch.randn(n) for n in (4000, 2400)]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    with torch.no_grad():
        out, frames = model(batch, torch.tensor([4000, 2400]))
        alone, alone_frames = model(clips[1][None])
    assert frames.tolist() == [24, 14] and alone_frames.tolist() == [14]
    torch.testing.assert_close(out[1, :14], alone[0], atol=1e-5, rtol=1e-4)
