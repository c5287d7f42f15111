"""BERT masked-LM pretraining (zoo.nlp.train_mlm) and fine-tuning for tagging (zoo.nlp.finetune):
BERT's 80/10/10 masking, the loss on masked pieces only, labels at each word's first piece, the
encoder carried over strictly, and smoke runs of both recipes through the CLI."""

import json

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.cli import main as zoo_main
from zoo.nlp import finetune, train_mlm
from zoo.nlp.train import SCHEMES, scheme_tags
from zoo.nlp.vocab import Vocab

from .test_train import TEST, TRAIN, VAL

LINES = ["EU rejects German call to boycott British lamb .", "Peter Blackburn", "BRUSSELS 1996-08-22",
         "The European Commission said on Thursday it disagreed with German advice ."]


@pytest.fixture
def conll(tmp_path):
    folder = tmp_path / "conll2003"
    folder.mkdir()
    for name, text in (("eng.train", TRAIN * 3), ("eng.testa", VAL), ("eng.testb", TEST)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    return train_mlm.train_tokenizer(LINES * 5, vocab_size=120)


def test_tokenizer_puts_the_specials_first_wraps_in_cls_sep_and_keeps_case(tokenizer):
    assert [tokenizer.token_to_id(t) for t in train_mlm.SPECIALS] == [0, 1, 2, 3, 4]
    enc = tokenizer.encode("EU rejects")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert "EU" in tokenizer.decode(enc.ids)  # cased: entity tagging needs the capitals
    assert train_mlm.train_tokenizer(LINES, 120, lowercase=True).encode("EU").tokens[1].islower()


def test_masking_follows_bert_80_10_10_and_never_touches_specials():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (400, 250), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    special[:, -20:] = True  # padding
    inputs, labels = train_mlm.mask_tokens(ids, special, mask_id=4, vocab_size=1000, generator=g)
    chosen = labels != train_mlm.IGNORE
    assert not chosen[special].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])  # pieces not chosen are left alone
    share = chosen.sum() / (~special).sum()
    masked = (inputs[chosen] == 4).float().mean()
    kept = (inputs[chosen] == ids[chosen]).float().mean()
    replaced = 1 - masked - kept
    assert abs(share - 0.15) < 0.005 and abs(masked - 0.8) < 0.01
    assert abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01  # a random piece may equal the original
    assert (inputs[chosen] >= 4).all()  # never [PAD]/[UNK]/[CLS]/[SEP] as a "random" piece


def test_masked_lm_loss_scores_the_chosen_pieces_only():
    torch.manual_seed(0)
    model = zoo.create("bert_tiny", head="mlm", vocab_size=60, max_positions=16).eval()
    task = train_mlm.MaskedLMTask({t: i for i, t in enumerate(train_mlm.SPECIALS)}, 60)
    inputs = torch.randint(5, 60, (3, 9))
    labels = torch.full_like(inputs, train_mlm.IGNORE)
    labels[0, 2], labels[2, 5] = 7, 11
    sums = task.evaluation_step(model, (inputs, labels))
    logits = model(inputs, torch.ones_like(inputs))
    by_hand = F.cross_entropy(logits[0, 2], torch.tensor(7), reduction="sum") + \
        F.cross_entropy(logits[2, 5], torch.tensor(11), reduction="sum")
    assert sums["count"] == 2
    torch.testing.assert_close(sums["loss"], by_hand)


def test_pieces_label_each_word_at_its_first_piece_and_cut_words_count_as_outside(tokenizer):
    from zoo.nlp.conll import Sentence

    tags = scheme_tags(Vocab("tag", ["B-ORG", "B-PER", "I-PER", "O"]), SCHEMES["iob2"])
    words = ["EU", "rejects", "Blackburnish", "Peter", "Blackburn"]
    sentence = Sentence(words, ["B-ORG", "O", "O", "B-PER", "I-PER"])
    full = finetune.PieceSentences([sentence], tags, tokenizer, max_len=64).items[0]
    ids, labels, firsts, gold = full
    enc = tokenizer.encode(words, is_pretokenized=True)
    assert firsts == [enc.word_ids.index(w) for w in range(len(words))]
    assert labels[firsts].tolist() == gold == tags.encode(sentence.tags)
    assert (labels != train_mlm.IGNORE).sum() == len(words)  # later pieces of a word are not scored
    cut = finetune.PieceSentences([sentence], tags, tokenizer, max_len=firsts[3] + 1).items[0]
    assert cut[0][-1] == tokenizer.token_to_id("[SEP]") and len(cut[2]) == 3
    task = finetune.PieceTaggingTask(tags)

    class Perfect(torch.nn.Module):  # logits that pick the gold tag at every scored piece
        def forward(self, ids, mask):
            return F.one_hot(cut[1].clamp(min=0), len(tags)).float()[None].expand(len(ids), -1, -1)

    sums = task.evaluation_step(Perfect(), finetune.collate([cut]))
    assert sums["gold/PER"] == 1 and sums["predicted/PER"] == 0  # Peter Blackburn was cut off: O
    assert sums["correct/ORG"] == 1


def test_train_then_finetune_through_the_cli_carries_the_encoder_over(tmp_path, conll):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(LINES * 6) + "\n", encoding="utf-8")
    mlm = tmp_path / "mlm"
    assert zoo_main(["train", "bert_tiny", "--text", str(text), "--vocab-size", "150", "--epochs", "1",
                     "--batch-size", "8", "--max-positions", "64", "--save-model", str(mlm), "--no-progress"]) == 0
    assert {p.name for p in mlm.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    pretrained = zoo.from_pretrained(mlm)
    out = tmp_path / "ft"
    assert zoo_main(["finetune", "bert_tiny", "--pretrained", str(mlm), "--data", str(conll), "--epochs", "1",
                     "--max-steps", "2", "--output-dir", str(out), "--save-model", str(tmp_path / "tagger"),
                     "--no-progress"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert 0.0 <= summary["test_f1_mean"] <= 100.0 and summary["scratch"] is False

    for scratch in (False, True):
        args = finetune.build_parser().parse_args(["--model", "bert_tiny", "--pretrained", str(mlm)]
                                                  + (["--scratch"] if scratch else []))
        model, tok = finetune.build_tagger(args, num_tags=5, seed=0)
        assert model.classifier.out_features == 5 and tok.get_vocab_size() == pretrained.config.vocab_size
        same = [torch.equal(a, b) for a, b in zip(model.bert.state_dict().values(),
                                                   pretrained.bert.state_dict().values())]
        assert all(same) if not scratch else not any(same[:1])  # --scratch: a fresh word embedding


def test_finetune_refuses_a_folder_that_holds_no_bert(tmp_path, conll):
    folder = tmp_path / "gpt"
    zoo.save_pretrained(zoo.create("gpt_char", vocab_size=20, max_positions=8, num_layers=1, num_heads=1,
                                   embed_dim=8), folder)
    with pytest.raises(zoo.InvalidConfigError, match="not a BERT"):
        finetune.load_encoder(str(folder), "bert_tiny")


def test_pretraining_text_needs_two_lines(tmp_path):
    text = tmp_path / "one.txt"
    text.write_text("only one line\n\n", encoding="utf-8")
    assert zoo_main(["train", "bert_tiny", "--text", str(text), "--no-progress"]) == 1
    with pytest.raises(zoo.DatasetError, match="at least two"):
        train_mlm.read_lines(text)
