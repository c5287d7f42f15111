"""G2P data (CMUdict words, stress, the fixed split), the WER / PER scorer on hand cases, and smoke
runs of the recipe (outputs, exact resume, beam table, bad options)."""

import csv
import json

import pytest
import torch

import zoo
from zoo.nlp import train_g2p
from zoo.nlp.g2p import G2PScore, load_cmudict, score, score_word, split_lexicon, split_of
from zoo.shared.errors import DatasetError, InputError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lexicon():
    return load_cmudict()


def test_words_pronunciations_and_stress(lexicon):
    assert set(lexicon["read"]) == {("R", "EH", "D"), ("R", "IY", "D")}
    assert lexicon["tomato"][0] == ("T", "AH", "M", "EY", "T", "OW")
    assert "a.m." not in lexicon and "all-out" not in lexicon and "abbott's" in lexicon
    assert len({p for prons in lexicon.values() for pron in prons for p in pron}) == 39
    stressed = load_cmudict(stress=True)
    assert stressed["tomato"][0] == ("T", "AH0", "M", "EY1", "T", "OW2")
    assert len({p for prons in stressed.values() for pron in prons for p in pron}) == 69
    assert set(stressed) == set(lexicon)
    for prons in lexicon.values():  # pronunciations equal once stress is gone are kept once
        assert len(set(prons)) == len(prons)


def test_the_split_is_fixed_by_the_word_and_disjoint(lexicon):
    # pinned: the split of a word never changes (it depends on the word's SHA-256 alone)
    assert [split_of(w) for w in ("cat", "dog", "hello", "a", "the", "abbott's")] == \
        ["test", "train", "test", "test", "train", "test"]
    splits = split_lexicon(lexicon)
    words = [set(s) for s in splits.values()]
    assert not (words[0] & words[1] or words[0] & words[2] or words[1] & words[2])
    assert sum(map(len, words)) == len(lexicon)
    share = {k: len(v) / len(lexicon) for k, v in splits.items()}
    assert share["train"] == pytest.approx(0.85, abs=0.01)
    assert share["val"] == pytest.approx(0.05, abs=0.01) and share["test"] == pytest.approx(0.10, abs=0.01)
    reordered = split_lexicon(dict(reversed(list(lexicon.items()))))
    assert all(set(reordered[k]) == set(splits[k]) for k in splits)
    assert splits["test"]["hello"] == lexicon["hello"]  # every pronunciation travels with its word


def test_a_prediction_is_right_when_it_equals_any_pronunciation():
    refs = [("R", "EH", "D"), ("R", "IY", "D")]
    assert score_word(["R", "IY", "D"], refs) == G2PScore(1, 0, 3, 0)
    assert score_word(["R", "EH", "D"], refs) == G2PScore(1, 0, 3, 0)
    assert score_word(["R", "AY", "D"], refs) == G2PScore(1, 1, 3, 1)  # one substitution


def test_phoneme_errors_count_edits_against_the_closest_pronunciation():
    refs = [("T", "AH", "M", "EY", "T", "OW"), ("T", "AH", "M", "AA", "T", "OW")]
    # deletion of T (1 edit) from the first; 2 from the second
    assert score_word(["T", "AH", "M", "EY", "OW"], refs) == G2PScore(1, 1, 6, 1)
    # insertion and substitution against the second, the closer one
    assert score_word(["T", "AH", "M", "AA", "AA", "T", "UW"], refs) == G2PScore(1, 1, 6, 2)
    # equally close: the shorter reference's length is the denominator
    assert score_word(["K", "AE", "T", "Z"], [("K", "AE", "T", "S", "Z"), ("K", "AE", "T")]) == \
        G2PScore(1, 1, 3, 1)
    assert score_word([], [("AH",)]) == G2PScore(1, 1, 1, 1)


def test_corpus_scores_add_words_and_edits():
    refs = {"read": [("R", "EH", "D"), ("R", "IY", "D")], "cat": [("K", "AE", "T")],
            "a": [("AH",), ("EY",)], "dog": [("D", "AO", "G")]}
    preds = {"read": ["R", "IY", "D"], "cat": ["K", "AH", "T"], "a": ["EY"], "dog": ["D", "G"]}
    s = score(preds, refs)
    assert (s.words, s.word_errors, s.phonemes, s.phoneme_errors) == (4, 2, 10, 2)
    assert s.wer == 0.5 and s.per == pytest.approx(0.2)
    with pytest.raises(DatasetError, match="1 words have no prediction.*'dog'"):
        score({k: v for k, v in preds.items() if k != "dog"}, refs)
    with pytest.raises(DatasetError, match="at least one reference"):
        score_word(["AH"], [])


def _args(out, *extra):
    return train_g2p.build_parser().parse_args(
        ["--model", "transformer_tiny", "--limit", "48", "--batch-size", "16", "--beam-sizes", "1,3",
         "--no-progress", "--output-dir", str(out), "--dim", "32", "--ffn-dim", "64", "--layers", "1",
         "--warmup-steps", "2", *extra])


def test_recipe_smoke_writes_its_outputs_and_the_beam_table(tmp_path, capsys):
    summary = train_g2p.run(_args(tmp_path / "run", "--epochs", "2", "--save-model", str(tmp_path / "model")))
    assert [row["beam"] for row in summary["test"]] == [1, 3]
    assert all(0 <= row["wer"] <= 1 and row["words"] == 48 for row in summary["test"])
    for name in ("metrics.csv", "curves.png", "last.pt", "results.json"):
        assert (tmp_path / "run" / name).is_file()
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["epoch"]) for r in rows] == [1, 2] and "val/wer" in rows[0] and "val/per" in rows[0]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"] == summary["test"]
    vocab = json.loads((tmp_path / "model" / "vocab.json").read_text())
    assert len(vocab["phonemes"]) == 3 + 39 and vocab["letters"][:3] == ["<pad>", "<s>", "</s>"]
    assert "test, beam  3: WER" in capsys.readouterr().out


def test_speed_options_reach_the_trainer_and_attention(tmp_path, capsys, monkeypatch):
    """--amp, --attention-kernel math, --eval-every, --activation-dropout and --cpu-dropout each take effect."""
    configs, kernels, dropouts = [], [], []
    real_kernel = train_g2p.sdpa_kernel

    class Recording(train_g2p.Trainer):
        def __init__(self, model, task, train, val, config, **kw):
            configs.append(config)
            dropouts.append({type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.Dropout)})
            super().__init__(model, task, train, val, config, **kw)

    def recording_kernel(backends):
        kernels.append(list(backends))
        return real_kernel(backends)

    monkeypatch.setattr(train_g2p, "Trainer", Recording)
    monkeypatch.setattr(train_g2p, "sdpa_kernel", recording_kernel)
    summary = train_g2p.run(_args(tmp_path / "run", "--epochs", "3", "--eval-every", "2", "--amp",
                                  "--attention-kernel", "math", "--dropout", "0.2", "--activation-dropout", "0",
                                  "--cpu-dropout"))
    assert configs[0].amp is True and kernels == [[train_g2p.SDPBackend.MATH]]
    assert dropouts[0] == {"CpuDropout"}
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [bool(r["val/wer"]) for r in rows] == [False, True, True]  # epochs 2 and 3 (the last)
    assert summary["config"]["dropout"] == 0.2 and summary["config"]["activation_dropout"] == 0.0
    configs.clear()
    train_g2p.run(_args(tmp_path / "plain", "--epochs", "1"))
    assert configs[0].amp == "auto" and kernels == [[train_g2p.SDPBackend.MATH]]  # no second math context
    assert dropouts[1] == {"Dropout"}


def test_layer_split_and_activation_reach_the_model(tmp_path, capsys):
    """--encoder-layers / --decoder-layers override --layers each; --activation swiglu gives the gated
    feed-forward layer, and the saved model comes back with it."""
    summary = train_g2p.run(_args(tmp_path / "run", "--epochs", "1", "--beam-sizes", "1", "--encoder-layers", "2",
                                  "--activation", "swiglu", "--save-model", str(tmp_path / "model")))
    config = summary["config"]
    assert (config["num_encoder_layers"], config["num_decoder_layers"], config["activation"]) == (2, 1, "swiglu")
    model = zoo.from_pretrained(tmp_path / "model")
    assert len(model.encoder.layers) == 2 and len(model.decoder.layers) == 1
    assert model.decoder.layers[0].linear1.weight.shape == (128, 32)  # gate and value, 64 each


def test_ema_weights_are_the_ones_picked_and_saved(tmp_path, capsys, monkeypatch):
    """--ema-decay 1 keeps the average at the initial weights: they, not the trained ones, are saved."""
    initial = {}

    class Recording(train_g2p.Trainer):
        def __init__(self, model, task, train, val, config, **kw):
            initial.update({k: v.clone() for k, v in model.state_dict().items()})
            super().__init__(model, task, train, val, config, **kw)

    monkeypatch.setattr(train_g2p, "Trainer", Recording)
    train_g2p.run(_args(tmp_path / "run", "--epochs", "2", "--ema-decay", "1",
                        "--save-model", str(tmp_path / "model")))
    saved = zoo.from_pretrained(tmp_path / "model").state_dict()
    assert saved.keys() == initial.keys() and all(torch.equal(saved[k], initial[k]) for k in saved)
    trained = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert not all(torch.equal(trained[k], initial[k]) for k in trained)  # the model itself did learn


class _Crash(Exception):
    pass


class _CrashAfterEpoch1(train_g2p.Trainer):
    def _end_epoch(self):
        super()._end_epoch()  # epoch 1's checkpoint is written: then the run dies
        raise _Crash


def test_resume_gives_the_same_model_as_one_uninterrupted_run(tmp_path, capsys, monkeypatch):
    train_g2p.run(_args(tmp_path / "whole", "--epochs", "2"))
    with monkeypatch.context() as m:
        m.setattr(train_g2p, "Trainer", _CrashAfterEpoch1)
        with pytest.raises(_Crash):
            train_g2p.run(_args(tmp_path / "parts", "--epochs", "2"))
    capsys.readouterr()
    train_g2p.run(_args(tmp_path / "parts", "--epochs", "2", "--resume"))
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "epoch 1/2" not in printed
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_batches_group_similar_lengths(lexicon):
    splits = split_lexicon(lexicon)
    letters, phonemes = train_g2p.symbol_vocabs(splits["train"])
    pairs = train_g2p.Pairs(dict(list(splits["train"].items())[:2000]), letters, phonemes, all_prons=True)
    batches = train_g2p.LengthBatches(pairs, 32, seed=0)
    assert torch.equal(torch.cat(batches.batches).sort().values, torch.arange(len(pairs)))  # each pair once
    src, tgt_in, tgt_out, refs = train_g2p.collate_batch([batches[0]])
    assert (tgt_in[:, 0] == 1).all() and ((tgt_out == 2).sum(1) == 1).all()
    for row, j in enumerate(batches.batches[0].tolist()):  # the pair's ids, padded
        x, y, word_refs = pairs[j]
        assert src[row].tolist() == x + [0] * (src.shape[1] - len(x)) and refs[row] is word_refs
        assert tgt_in[row, : len(y) + 1].tolist() == [1, *y] and tgt_out[row, : len(y) + 1].tolist() == [*y, 2]
        assert not tgt_out[row, len(y) + 1 :].any()
    padded = [(batches[i][0] == 0).float().mean() for i in range(len(batches))]
    assert sum(padded) / len(padded) < 0.05  # sorted within windows: little padding


def test_regrouped_batches_change_with_the_epoch_and_fixed_ones_do_not(lexicon):
    splits = split_lexicon(lexicon)
    letters, phonemes = train_g2p.symbol_vocabs(splits["train"])
    pairs = train_g2p.Pairs(dict(list(splits["train"].items())[:2000]), letters, phonemes, all_prons=True)
    fixed, regrouped = train_g2p.LengthBatches(pairs, 32, 0), train_g2p.LengthBatches(pairs, 32, 0, regroup=True)
    groups = lambda b: {tuple(sorted(batch.tolist())) for batch in b.batches}  # noqa: E731
    epoch0 = groups(fixed)
    assert groups(regrouped) == epoch0  # epoch 0 is the fixed grouping
    fixed.set_epoch(1)
    regrouped.set_epoch(1)
    assert groups(fixed) == epoch0
    epoch1 = groups(regrouped)
    assert len(epoch1 & epoch0) < len(epoch0) / 2  # mostly new batches
    assert torch.equal(torch.cat(regrouped.batches).sort().values, torch.arange(len(pairs)))
    assert sum((regrouped[i][0] == 0).float().mean() for i in range(len(regrouped))) / len(regrouped) < 0.05
    regrouped.set_epoch(0)
    assert groups(regrouped) == epoch0  # a function of the epoch alone (resume, every rank)


def test_bad_options():
    with pytest.raises(InputError, match="--beam-sizes takes positive integers"):
        train_g2p.run(train_g2p.build_parser().parse_args(["--beam-sizes", "0,x"]))
    with pytest.raises(InputError, match="--eval-every takes a number of epochs >= 1, got 0"):
        train_g2p.run(train_g2p.build_parser().parse_args(["--eval-every", "0"]))
    with pytest.raises(SystemExit):
        train_g2p.build_parser().parse_args(["--model", "resnet18"])


def test_a_rank_other_than_0_writes_no_results_or_model(tmp_path, capsys, monkeypatch):
    """Under torchrun every rank ends with the same summary; rank 0 alone writes it and the model."""
    monkeypatch.setattr(train_g2p, "is_main_process", lambda: False)
    summary = train_g2p.run(_args(tmp_path / "run", "--epochs", "1", "--save-model", str(tmp_path / "model")))
    assert summary["test"] and not (tmp_path / "run" / "results.json").exists()
    assert not (tmp_path / "model").exists()
