"""Hugging Face model folders: their ``config.json`` translated to our configs, their tokenizers.

A folder written by ``transformers``' ``save_pretrained`` (or a hub snapshot) holds ``config.json``,
``model.safetensors`` or ``pytorch_model.bin`` and the tokenizer files. The zoo reads the config
(:func:`config_from_hf`: sizes, activation, layer-norm epsilon, vocabulary, position count, task
head), builds our model and loads the weights strictly through the family's key map; the tokenizer
is read by the ``tokenizers`` library (:func:`load_tokenizer`), so text gives the ids
``transformers`` would give. Nothing here imports ``transformers``.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch.nn.functional as F

from zoo.shared.errors import InvalidConfigError, InvalidConfigFileError, PretrainedNotFoundError

# Hugging Face's activation names (``hidden_act`` / ``activation_function``) -> the function.
# gelu_new / gelu_pytorch_tanh are the tanh approximation (GPT-2); gelu is the exact erf form (BERT).
ACTIVATIONS: dict[str, Callable] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": lambda x: x.tanh(),
}


def activation(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise InvalidConfigError(f"activation {name!r} is not supported; use one of {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


# ------------------------------------------------------------------------------------------------
# config.json -> our config
# ------------------------------------------------------------------------------------------------

def read_hf_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face folder, as a dict (checked to be one)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise PretrainedNotFoundError(f"{path} does not exist: a Hugging Face folder holds config.json beside "
                                      "its weights (transformers' save_pretrained writes both).")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidConfigFileError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(config, dict):
        raise InvalidConfigFileError(f"{path}: expected a JSON object, got {type(config).__name__}.")
    return config


def _need(hf: dict, key: str, where: str) -> Any:
    if key not in hf:
        raise InvalidConfigFileError(f"{where}: the Hugging Face config has no {key!r}; it does not describe a "
                                     "model this family can build.")
    return hf[key]


def _num_labels(hf: dict) -> int:
    if isinstance(hf.get("id2label"), dict):
        return len(hf["id2label"])
    return int(hf.get("num_labels", 2))


BERT_HEADS = {"BertModel": "none", "BertForMaskedLM": "mlm", "BertForSequenceClassification": "sequence",
              "BertForTokenClassification": "token"}


def bert_config_from_hf(hf: dict, where: str = "config.json") -> dict[str, Any]:
    """A ``BertConfig`` dict -> the keyword arguments of :func:`zoo.nlp.bert.bert`."""
    if hf.get("model_type", "bert") != "bert":
        raise InvalidConfigFileError(f"{where}: model_type is {hf['model_type']!r}, not 'bert'.")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise InvalidConfigFileError(f"{where}: position_embedding_type {hf['position_embedding_type']!r} is not "
                                     "supported (only 'absolute', BERT's).")
    archs = hf.get("architectures") or ["BertModel"]
    head = BERT_HEADS.get(archs[0])
    if head is None:
        raise InvalidConfigFileError(f"{where}: architecture {archs[0]!r} is not one of {', '.join(BERT_HEADS)}.")
    config = dict(
        vocab_size=_need(hf, "vocab_size", where), hidden_dim=_need(hf, "hidden_size", where),
        num_layers=_need(hf, "num_hidden_layers", where), num_heads=_need(hf, "num_attention_heads", where),
        intermediate_dim=_need(hf, "intermediate_size", where),
        max_positions=hf.get("max_position_embeddings", 512), type_vocab_size=hf.get("type_vocab_size", 2),
        hidden_act=hf.get("hidden_act", "gelu"), layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        hidden_dropout=float(hf.get("hidden_dropout_prob", 0.1)),
        attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
        pad_token_id=hf.get("pad_token_id", 0) or 0, head=head,
    )
    if head in ("sequence", "token"):
        config["num_classes"] = _num_labels(hf)
        if hf.get("classifier_dropout") is not None:
            config["classifier_dropout"] = float(hf["classifier_dropout"])
    return config


def gpt2_config_from_hf(hf: dict, where: str = "config.json") -> dict[str, Any]:
    """A ``GPT2Config`` dict -> the keyword arguments of :func:`zoo.nlp.gpt2.gpt2`."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise InvalidConfigFileError(f"{where}: model_type is {hf['model_type']!r}, not 'gpt2'.")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if hf.get(flag):
            raise InvalidConfigFileError(f"{where}: {flag}=true is not supported by the zoo's GPT-2.")
    if hf.get("scale_attn_weights", True) is not True:
        raise InvalidConfigFileError(f"{where}: scale_attn_weights=false is not supported by the zoo's GPT-2.")
    return dict(
        vocab_size=_need(hf, "vocab_size", where), max_positions=hf.get("n_positions", 1024),
        embed_dim=hf.get("n_embd", 768), num_layers=hf.get("n_layer", 12), num_heads=hf.get("n_head", 12),
        mlp_dim=hf.get("n_inner"), activation=hf.get("activation_function", "gelu_new"),
        layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        resid_dropout=float(hf.get("resid_pdrop", 0.1)), embed_dropout=float(hf.get("embd_pdrop", 0.1)),
        attention_dropout=float(hf.get("attn_pdrop", 0.1)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
    )


TRANSLATORS = {"bert": bert_config_from_hf, "gpt2": gpt2_config_from_hf}


def config_from_hf(family: str, directory: str | os.PathLike) -> dict[str, Any] | None:
    """Our config for the Hugging Face folder ``directory`` or ``hf-hub:org/name`` (None when it holds
    no HF config.json, e.g. a zoo ``save_pretrained`` folder). ``family`` is "bert" or "gpt2"."""
    if str(directory).startswith("hf-hub:"):
        directory = hf_folder(str(directory))
    path = Path(directory) / "config.json"
    if not path.is_file():
        return None
    hf = read_hf_config(directory)
    if "architecture" in hf or hf.get("format") == "zoo":
        return None
    return TRANSLATORS[family](hf, str(path))


def registry_hook(family: str) -> dict[str, Any]:
    """The ``foreign_config=`` keyword of ``register_model``: how ``zoo.create(name, pretrained=dir)``
    reads a Hugging Face folder's config.json into our config."""
    return {"foreign_config": functools.partial(config_from_hf, family)}


def hf_folder(spec: str | os.PathLike) -> Path:
    """A local folder for ``spec``: a directory, or ``hf-hub:org/name`` resolved through the hub
    cache (the snapshot folder holding config.json beside the weights)."""
    text = os.fspath(spec)
    if isinstance(text, str) and text.startswith("hf-hub:"):
        from zoo.shared.weights import hub_folder

        return hub_folder(text)
    path = Path(text).expanduser()
    if not path.is_dir():
        raise PretrainedNotFoundError(f"{path} is not a directory; pass a Hugging Face model folder or "
                                      "'hf-hub:org/name'.")
    return path


def from_hf(name: str, spec: str | os.PathLike, **overrides: Any):
    """Build the registered model ``name`` ("bert", "gpt2", ...) as the Hugging Face folder (or
    ``hf-hub:org/name``) describes it, and load its weights strictly. ``overrides`` win over the
    folder's config (e.g. ``num_classes`` for a new head)."""
    from zoo.shared.factory import create
    from zoo.shared.registry import get_entry

    family = getattr(get_entry(name).builder, "__name__", "")
    if family not in TRANSLATORS:
        raise InvalidConfigError(f"{name} is not a model built from Hugging Face configs (those are the "
                                 f"{', '.join(TRANSLATORS)} families).")
    folder = hf_folder(spec)
    config = config_from_hf(family, folder)
    if config is None:
        raise PretrainedNotFoundError(f"{folder} holds no Hugging Face config.json.")
    return create(name, pretrained=str(folder), **{**config, **overrides})


# ------------------------------------------------------------------------------------------------
# Tokenizers
# ------------------------------------------------------------------------------------------------

def _special(folder: Path) -> dict[str, Any]:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise InvalidConfigFileError(f"{path}: not valid JSON ({exc}).") from None
    return {}


def _token(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def load_tokenizer(spec: str | os.PathLike):
    """The tokenizer of a Hugging Face folder (or ``hf-hub:org/name``, or a tokenizer file) as a
    ``tokenizers.Tokenizer``: ``tokenizer.json`` as written; else a WordPiece ``vocab.txt`` (BERT:
    lower-casing and accent stripping from tokenizer_config.json, [CLS] ... [SEP] around the text)
    or a byte-level BPE ``vocab.json`` + ``merges.txt`` (GPT-2: no special tokens added)."""
    import tokenizers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    text = os.fspath(spec)
    if isinstance(text, str) and text.startswith("hf-hub:"):
        folder = _hub_tokenizer_folder(text)
    else:
        folder = Path(text).expanduser()
    if folder.is_file():
        if folder.name.endswith(".json") and folder.name != "vocab.json":
            return Tokenizer.from_file(str(folder))
        folder = folder.parent
    if not folder.is_dir():
        raise PretrainedNotFoundError(f"{folder} is neither a tokenizer file nor a folder holding one.")
    if (folder / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(folder / "tokenizer.json"))
    special = _special(folder)
    if (folder / "vocab.txt").is_file():
        vocab = {}
        for i, line in enumerate((folder / "vocab.txt").read_text(encoding="utf-8").splitlines()):
            vocab.setdefault(line.rstrip("\n"), i)
        unk = _token(special.get("unk_token")) or "[UNK]"
        cls, sep = _token(special.get("cls_token")) or "[CLS]", _token(special.get("sep_token")) or "[SEP]"
        for token in (unk, cls, sep):
            if token not in vocab:
                raise InvalidConfigFileError(f"{folder / 'vocab.txt'}: the special token {token!r} is not in the "
                                             "vocabulary.")
        lower = bool(special.get("do_lower_case", True))
        accents = special.get("strip_accents")
        tok = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=bool(special.get("tokenize_chinese_chars", True)),
            strip_accents=accents, lowercase=lower)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
        tok.decoder = decoders.WordPiece(prefix="##")
        specials = [_token(special.get(k)) for k in ("unk_token", "sep_token", "pad_token", "cls_token",
                                                     "mask_token")]
        tok.add_special_tokens([t for t in dict.fromkeys(specials or [unk, cls, sep]) if t in vocab])
        return tok
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        model = models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
        tok = Tokenizer(model)
        prefix = bool(special.get("add_prefix_space", False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        # GPT-2's one special token, unless the folder's tokenizer config names others
        names = [_token(special.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")]
        for token in dict.fromkeys([t for t in names if t] or ["<|endoftext|>"]):
            if tok.token_to_id(token) is not None:
                tok.add_special_tokens([token])
        return tok
    present = sorted(p.name for p in folder.iterdir() if p.is_file())
    raise InvalidConfigFileError(
        f"No tokenizer the zoo can read in {folder} (it holds {', '.join(present) or 'no files'}): expected "
        "tokenizer.json, a WordPiece vocab.txt, or a byte-level BPE vocab.json + merges.txt "
        f"(tokenizers {tokenizers.__version__}).")


def _hub_tokenizer_folder(spec: str) -> Path:
    from huggingface_hub import hf_hub_download

    from zoo.shared.weights import is_offline

    repo_id = spec[len("hf-hub:"):].strip("/")
    for filename in ("tokenizer.json", "vocab.txt", "vocab.json"):
        try:
            path = Path(hf_hub_download(repo_id, filename, local_files_only=is_offline()))
        except Exception:
            continue
        if filename == "vocab.json":
            hf_hub_download(repo_id, "merges.txt", local_files_only=is_offline())
        for extra in ("tokenizer_config.json", "special_tokens_map.json"):
            try:
                hf_hub_download(repo_id, extra, local_files_only=is_offline())
            except Exception:
                pass
        return path.parent
    raise PretrainedNotFoundError(f"No tokenizer file (tokenizer.json, vocab.txt, vocab.json) for {spec!r} in the "
                                  "hub cache" + (" (offline)" if is_offline() else "") + ".")
