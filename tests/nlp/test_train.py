"""Smoke runs of the BiLSTM-CRF recipe (zoo.nlp.train) on a tiny CoNLL-2003 file set, and a few
steps on the real files when ../shared/data holds them."""

import csv
import json

import pytest
import torch

import zoo
from zoo.cli import main as zoo_main
from zoo.nlp import train

# IOB1, as the English CoNLL-2003 files are written: I- everywhere, B- only between two entities
TRAIN = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
to TO B-VP O
boycott VB I-VP O
British JJ B-NP I-MISC
lamb NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP B-NP I-LOC
1996-08-22 CD I-NP O

The DT B-NP O
European NNP I-NP I-ORG
Commission NNP I-NP I-ORG
said VBD B-VP O
on IN B-PP O
Thursday NNP B-NP O
"""
VAL = """-DOCSTART- -X- -X- O

Germany NNP B-NP I-LOC
's POS B-NP O
representative NN I-NP O
Werner NNP B-NP I-PER
Zwingmann NNP I-NP I-PER
"""
TEST = """-DOCSTART- -X- -X- O

Japan NNP B-NP I-LOC
began VBD B-VP O
the DT B-NP O
defence NN I-NP O
of IN B-PP O
their PRP$ B-NP O
Asian JJ I-NP I-MISC
Cup NNP I-NP I-MISC
title NN I-NP O
"""


@pytest.fixture
def conll(tmp_path):
    folder = tmp_path / "conll2003"
    folder.mkdir()
    for name, text in (("eng.train", TRAIN * 3), ("eng.testa", VAL), ("eng.testb", TEST)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _args(*argv):
    return train.build_parser().parse_args(["--no-progress", *argv])


def test_run_trains_reports_test_f1_and_writes_the_run_folder(conll, tmp_path):
    out, saved = tmp_path / "run", tmp_path / "tagger"
    summary = train.run(_args("--data", str(conll), "--epochs", "2", "--output-dir", str(out),
                              "--save-model", str(saved)))
    assert summary["model"] == "bilstm_crf" and summary["seeds"] == 1
    (run,) = summary["runs"]
    per_type = run["test"]["per_type"]  # the types of eng.testb's gold or predicted entities
    assert {"LOC", "MISC"} <= set(per_type) and all(s["support"] or s["predicted"] for s in per_type.values())
    assert run["test"]["overall"]["support"] == 2 and 0 <= summary["test_f1_mean"] <= 100
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["epoch"]) for r in rows] == [1, 2] and "val/f1" in rows[0]
    assert (out / "curves.png").is_file() and (out / "last.pt").is_file()
    assert json.loads((out / "results.json").read_text())["test_f1_mean"] == summary["test_f1_mean"]
    tagger = zoo.from_pretrained(saved)
    assert "Japan" not in tagger.vocabs["words"]  # eng.testb's words stay out of the vocabulary
    (out_sentence,) = tagger.tag([["EU", "rejects", "German", "call"]])
    assert len(out_sentence.tags) == 4 and set(out_sentence.tags) <= set(tagger.vocabs["tags"].tokens)


def test_resume_continues_the_run(conll, tmp_path, capsys):
    out = tmp_path / "run"
    train.run(_args("--data", str(conll), "--epochs", "1", "--output-dir", str(out)))
    capsys.readouterr()
    train.run(_args("--data", str(conll), "--epochs", "2", "--output-dir", str(out), "--resume"))
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "epoch 1/2" not in printed  # epoch 1 came from the checkpoint
    with open(out / "metrics.csv") as f:
        assert [float(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_seeds_bioes_and_the_char_cnn_variant(conll, tmp_path):
    summary = train.run(_args("--model", "bilstm_cnn_crf", "--data", str(conll), "--epochs", "1",
                              "--seeds", "2", "--scheme", "bioes", "--optimizer", "adam", "--lr", "0.01"))
    assert [r["seed"] for r in summary["runs"]] == [0, 1] and summary["scheme"] == "bioes"
    f1s = [100 * r["test_f1"] for r in summary["runs"]]
    assert summary["test_f1_mean"] == pytest.approx(sum(f1s) / 2, abs=0.01)


def test_zoo_train_dispatches_to_the_recipe_and_zoo_data_is_found(conll, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_DATA", str(conll.parent))  # no --data: $ZOO_DATA/conll2003
    assert zoo_main(["train", "bilstm_crf", "--epochs", "1", "--no-progress"]) == 0
    assert "eng.testb F1" in capsys.readouterr().out


def test_word_vectors_bring_the_test_words_they_cover_and_nothing_else(conll, tmp_path, capsys):
    vectors, saved = tmp_path / "glove.txt", tmp_path / "tagger"
    vectors.write_text("japan 1 2 3\neu 4 5 6\n", encoding="utf-8")
    train.run(_args("--data", str(conll), "--epochs", "1", "--word-vectors", str(vectors), "--word-dim", "3",
                    "--save-model", str(saved)))
    assert "pretrained vectors cover" in capsys.readouterr().out
    tagger = zoo.from_pretrained(saved)
    words = tagger.vocabs["words"]
    assert "Japan" in words and "began" not in words  # a testb word the vectors cover; one they do not


def test_a_missing_data_folder_says_which_files_and_how_to_pass_them(tmp_path):
    with pytest.raises(zoo.DatasetError, match="eng.train.*--data"):
        train.run(_args("--data", str(tmp_path)))


def test_the_tasks_span_counts_equal_span_scores():
    import torch

    from zoo.nlp.bilstm_crf import vocab_config
    from zoo.nlp.conll import Sentence
    from zoo.nlp.metrics import span_scores
    from zoo.nlp.vocab import build_vocabs

    sentences = [Sentence("EU rejects German call".split(), ["B-ORG", "O", "B-MISC", "O"]),
                 Sentence("Peter Blackburn in BRUSSELS".split(), ["B-PER", "I-PER", "O", "B-LOC"])] * 4
    words, chars, seen = build_vocabs(sentences)
    tags = train.scheme_tags(seen, "IOB2")
    task = train.TaggingTask(tags)
    torch.manual_seed(0)
    model = zoo.create("bilstm_crf", num_words=len(words), num_chars=len(chars), num_tags=len(tags),
                       vocab=vocab_config(words, chars, tags), hidden_dim=4).eval()
    predicted = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "O", "O", "B-LOC"],  # right; PER cut short
                 ["B-ORG", "I-ORG", "B-MISC", "O"], ["B-PER", "I-PER", "O", "B-ORG"],  # too long; wrong type
                 ["O", "O", "O", "O"], ["B-PER", "I-PER", "O", "B-LOC"]] + [["O"] * 4] * 2
    model.crf.decode = lambda emissions, mask: [tags.encode(p) for p in predicted]
    batch = train.Collate(words, chars)(train.TaggedSentences(sentences, tags).items)
    with torch.no_grad():
        sums = {k: float(v) for k, v in task.evaluation_step(model, batch).items()}
    expected = span_scores([s.tags for s in sentences], predicted)
    assert 0 < expected.f1 < 1
    assert task.scores(sums) == expected
    metrics = task.compute_metrics(sums)
    assert metrics["f1"] == expected.f1 and metrics["loss"] == pytest.approx(sums["loss"] / len(sentences))


def test_real_files_load_and_train_a_few_steps(shared_data, tmp_path):
    folder = shared_data / "conll2003"
    if not (folder / "eng.train").is_file():
        pytest.skip(f"{folder} holds no eng.train")
    summary = train.run(_args("--data", str(folder), "--limit", "300", "--max-steps", "5"))
    (run,) = summary["runs"]
    assert set(run["test"]["per_type"]) >= {"LOC", "MISC", "ORG", "PER"}
    assert run["test"]["overall"]["support"] > 300


def test_training_replaces_singletons_by_unk_and_only_them():
    import torch

    task = train.TaggingTask(train.Vocab("tag", ["O"]), singletons=[3, 5], unk_replace=1.0)
    seen = []

    def model(words, chars, mask, tags):
        seen.append(words)
        return torch.zeros(len(words))

    words = torch.tensor([[2, 3, 4, 5], [5, 6, 0, 0]])
    task.training_step(model, (words, None, None, None))
    assert seen[0].tolist() == [[2, 1, 4, 1], [1, 6, 0, 0]]  # 1: UNK
    task.unk_replace = 0.0
    task.training_step(model, (words, None, None, None))
    assert torch.equal(seen[1], words)


def test_context_groups_pack_neighbours_of_one_document_up_to_the_limit():
    from zoo.nlp.conll import Sentence

    doc = lambda d, *lengths: [Sentence(["w"] * n, ["O"] * n, d) for n in lengths]  # noqa: E731
    sentences = doc(1, 3, 4, 2, 6) + doc(2, 1, 1) + doc(3, 9)
    groups = train.context_groups(sentences, context=8)
    assert [[len(s) for s in g] for g in groups] == [[3, 4], [2, 6], [1, 1], [9]]  # 9 > 8 stays alone
    assert all(len({s.doc for s in g}) == 1 for g in groups)  # never across a document
    assert [[len(s)] for s in sentences] == [[len(s) for s in g] for g in train.context_groups(sentences)]


def test_packed_sentences_are_scored_one_sentence_at_a_time():
    """The same predictions give the same span counts whether the sentences are packed or not,
    even when a predicted entity runs across a sentence boundary inside a packed row."""
    import torch

    from zoo.nlp.bilstm_crf import vocab_config
    from zoo.nlp.conll import Sentence
    from zoo.nlp.vocab import build_vocabs

    sentences = [Sentence("EU rejects German call".split(), ["B-ORG", "O", "B-MISC", "O"], 1),
                 Sentence("Peter Blackburn".split(), ["B-PER", "I-PER"], 1),
                 Sentence("in BRUSSELS".split(), ["O", "B-LOC"], 1)]
    words, chars, seen = build_vocabs(sentences)
    tags = train.scheme_tags(seen, "IOB2")
    task = train.TaggingTask(tags)
    model = zoo.create("bilstm_crf", num_words=len(words), num_chars=len(chars), num_tags=len(tags),
                       vocab=vocab_config(words, chars, tags), hidden_dim=4).eval()
    predicted = [["B-ORG", "O", "B-MISC", "I-MISC"], ["I-MISC", "I-PER"], ["O", "B-LOC"]]  # MISC runs on
    collate = train.Collate(words, chars)
    counts = []
    for context, paths in ((0, predicted), (100, [sum(predicted, [])])):
        model.crf.decode = lambda emissions, mask, paths=paths: [tags.encode(p) for p in paths]
        batch = collate(train.TaggedSentences(sentences, tags, context).items)
        assert task.sentences(batch) == 3 and len(batch[0]) == (3 if context == 0 else 1)
        with torch.no_grad():
            counts.append({k: float(v) for k, v in task.evaluation_step(model, batch).items() if k != "loss"})
    assert counts[0] == counts[1]
    assert task.scores(counts[1]).per_type["PER"].recall == 0  # "I-MISC I-PER" is no PER entity


@pytest.mark.parametrize("name, module", [("transformer_small", "train_g2p"), ("gpt_char", "train_gpt")])
def test_main_hands_other_nlp_models_to_their_recipes(monkeypatch, name, module):
    import importlib

    recipe = importlib.import_module(f"zoo.nlp.{module}")
    seen = []
    monkeypatch.setattr(recipe, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setattr(train, "run", lambda args: pytest.fail("the tagger recipe ran"))
    assert train.main(["--model", name, "--epochs", "1"]) == 0
    assert train.main([f"--model={name}"]) == 0
    assert seen == [["--model", name, "--epochs", "1"], [f"--model={name}"]]


def test_ema_decay_evaluates_and_saves_the_averaged_weights(conll, tmp_path):
    def saved(name, *options):
        train.run(_args("--data", str(conll), "--epochs", "1", "--optimizer", "adam", "--save-model",
                        str(tmp_path / name), *options))
        return zoo.from_pretrained(tmp_path / name).state_dict()

    initial = saved("initial", "--lr", "0")  # lr 0: the weights never move
    frozen = saved("frozen", "--lr", "0.01", "--ema-decay", "1.0")  # decay 1: the average never moves
    trained = saved("trained", "--lr", "0.01")
    weight = "emissions.weight"
    assert torch.equal(frozen[weight], initial[weight])
    assert not torch.equal(trained[weight], initial[weight])


def test_pretrained_word_vectors_come_from_the_training_text_and_initialise_the_embeddings(conll, tmp_path, capsys):
    pytest.importorskip("gensim", reason="--pretrain-word-vectors trains with gensim (a dev dependency)")
    from zoo.nlp.bilstm_crf import read_word_vectors

    out, saved = tmp_path / "run", tmp_path / "tagger"
    train.run(_args("--data", str(conll), "--epochs", "1", "--max-steps", "1", "--optimizer", "sgd", "--lr", "1e-12",
                    "--momentum", "0", "--lowercase", "--pretrain-word-vectors", "--output-dir", str(out),
                    "--save-model", str(saved)))
    printed = capsys.readouterr().out
    assert "pretrained vectors cover 100.0%" in printed and "(word2vec.txt)" in printed
    tagger = zoo.from_pretrained(saved)
    words = tagger.vocabs["words"]
    assert "japan" not in words and "european" in words  # eng.train's words only, lowercased
    rows, coverage = read_word_vectors(out / "word2vec.txt", words, tagger.word_embed.embedding_dim)
    assert coverage == 1.0
    # one step at lr 1e-12: the embeddings are still the vectors written (PAD and UNK keep their own rows)
    torch.testing.assert_close(tagger.word_embed.weight[2:].detach(), rows[2:], atol=1e-5, rtol=0)
