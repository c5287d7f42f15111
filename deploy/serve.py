"""``zoo serve``: a saved model behind HTTP (FastAPI + uvicorn), with dynamic batching.

    zoo serve --pretrained runs/digits                  # torch, eager, under torch.inference_mode()
    zoo serve --onnx model.onnx [--pretrained DIR]      # ONNX Runtime; the sidecar model.onnx.json
                                                        # gives input names, data config and labels

Endpoints:

    GET  /health    {"status": "ok", "model": NAME}
    GET  /info      the model card (name, domain, task, paper, config, labels), what /predict takes,
                    the backend, the batching and the size limits
    GET  /metrics   requests served, the batches run and how many requests each held
    POST /predict   one input; the answer depends on the model's task:

    image-classification   an image: multipart (-F file=@cat.png) or the raw bytes (image/*)
                           -> {"top": [{"index", "label", "prob"}, ...]}
    audio-classification   an audio file: multipart or the raw bytes (audio/*); read with soundfile,
                           mixed to mono and resampled to the model's rate -> {"top": [...]}
    sequence-labelling     JSON {"text": "EU rejects German call"} (split at white space) or
                           {"tokens": ["EU", ...]} -> {"tokens", "tags", "entities": [...]}
    text-encoding          BERT with head="sequence" and its tokenizer files in DIR (tokenizer.json or
                           vocab.txt): JSON {"text": "..."} or text/plain -> {"top": [...]}
    language-modelling     GPT-2 and its tokenizer files in DIR: JSON {"text": "..."} or text/plain
                           -> {"next": [{"id", "token", "prob"}, ...]}, the most probable next tokens
    node-classification    JSON {"x": [[...], ...], "edge_index": [[src...], [dst...]]}
                           -> {"nodes": [{"node", "top": [...]}, ...]}
    graph-classification   the same JSON -> {"top": [...]}

``?topk=K`` on /predict overrides ``--topk`` for one request.

Dynamic batching: each request is parsed (decoded, resized, checked) in a worker thread and put on
an asyncio queue; one batcher task takes the first waiting request, waits at most ``--max-wait-ms``
for more, up to ``--max-batch``, and runs them as one batch on a single model thread, so the event
loop keeps accepting while the model computes. It waits only while other requests are being read
or parsed: a lone request runs at once. Only compatible requests share a batch: images are
all resized to the model's size; audio clips batch with clips of the same length (padding would
change a per-utterance normalisation); texts of any length batch (the tagger and BERT pad and mask;
GPT-2 pads on the right, which causal attention never sees); graphs batch as one disjoint union.

A bad request is answered 4xx with ``{"error": MESSAGE}`` and the server keeps serving: 413 for a
body over ``--max-upload-mb`` (counted while reading, before it is all in memory) or a text over
``--max-text-chars``, 415 for a content type the model does not take, 400 for an undecodable image or
audio file or malformed JSON / multipart, 422 for a missing or ill-typed field or a graph whose edge
ids are out of range. Anything else is a bug: 500 with a message, and the server goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import math
import socket
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator

import numpy as np
import torch
from starlette.requests import Request  # at module level: FastAPI reads the handler's annotation by name

from zoo.shared.cli_types import floats, positive_int
from zoo.shared.errors import InputError, ZooError

log = logging.getLogger("zoo.serve")

TASKS = ("image-classification", "audio-classification", "sequence-labelling", "text-encoding",
         "language-modelling", "node-classification", "graph-classification")
IMAGE_TYPES = ("multipart/form-data", "image/*", "application/octet-stream")
AUDIO_TYPES = ("multipart/form-data", "audio/*", "application/octet-stream")
JSON_TYPES = ("application/json",)


class RequestError(Exception):
    """A request the server refuses: its HTTP status and a message that names the problem and the fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------------------------------
# Backends: what runs a batch of arrays
# ------------------------------------------------------------------------------------------------


class TorchBackend:
    name = "torch"

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(*(torch.from_numpy(a) for a in inputs)).float().numpy()


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, path: Path, input_names: list[str], threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
            raise InputError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc}); "
                             "export it again with `zoo export NAME --format onnx`.") from None
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if graph_inputs != input_names:
            raise InputError(f"{path} takes the inputs {graph_inputs} but its sidecar "
                             f"{path}.json lists {input_names}; export it again.")
        self.input_names = input_names

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, dict(zip(self.input_names, inputs)))[0]


# ------------------------------------------------------------------------------------------------
# Servables: a request's bytes -> a parsed input (with its batching key) -> a batch -> answers
# ------------------------------------------------------------------------------------------------


def _top(probs: np.ndarray, labels: list[str] | None, k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"index": int(i), "label": labels[i] if labels else str(int(i)), "prob": float(probs[i])}
            for i in order]


def _softmax(logits: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.asarray(logits)).double().softmax(-1).numpy()


def _parse_json(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise RequestError(422, f"the JSON body must be an object, got {type(value).__name__}.")
    return value


@dataclass
class Servable:
    """A loaded model and how its requests become inputs and its outputs answers."""

    name: str
    task: str
    backend: Any
    labels: list[str] | None
    topk: int
    content_types: tuple[str, ...]
    config: dict = field(default_factory=dict)  # the model's config, as saved / exported
    num_params: int | None = None  # None on ONNX Runtime without the torch model
    spec: dict = field(default_factory=dict)  # what /info shows under "input"

    def parse(self, body: bytes, content_type: str) -> tuple[Hashable, Any]:
        """``(batching key, input)``; requests with equal keys can share a batch."""
        raise NotImplementedError

    def run(self, inputs: list, topks: list[int]) -> list[dict]:
        raise NotImplementedError

    def topk_limit(self) -> int | None:
        return len(self.labels) if self.labels else None


class _Classifier(Servable):
    """Inputs of one shape stacked into a batch; the answer is each row's top-k labels."""

    def run(self, inputs, topks):
        probs = _softmax(self.backend(np.stack(inputs)))
        return [{"top": _top(p, self.labels, k)} for p, k in zip(probs, topks)]


@dataclass
class ImageClassifier(_Classifier):
    data: Any = None  # zoo.predict.DataConfig
    transform: Callable | None = None

    def parse(self, body, content_type):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(body)) as img:
                img = img.convert("L" if self.data.in_chans == 1 else "RGB")
        except Image.DecompressionBombError as exc:
            raise RequestError(413, f"the image has too many pixels ({exc}).") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise RequestError(400, f"cannot decode the upload as an image ({type(exc).__name__}: {exc}); "
                                    "send PNG, JPEG or another format PIL reads.") from None
        x = self.transform(img).numpy()
        return x.shape, x


@dataclass
class AudioClassifier(_Classifier):
    sample_rate: int = 16000

    def parse(self, body, content_type):
        from zoo.audio.io import load_audio
        from zoo.shared.errors import DatasetError

        with tempfile.NamedTemporaryFile(suffix=".wav" if b"WAVE" in body[8:12] else ".audio") as f:
            f.write(body)
            f.flush()
            try:
                waveform, _ = load_audio(f.name, self.sample_rate)
            except DatasetError as exc:  # names the temporary file: say "the upload" instead
                raise RequestError(400, str(exc).replace(f.name, "the upload")) from None
        x = waveform.numpy().astype(np.float32, copy=False)
        return x.shape, x


@dataclass
class Tagger(Servable):
    model: Any = None  # the BiLSTM-CRF (decoding is its Viterbi, run in torch)
    max_text_chars: int = 10_000

    def parse(self, body, content_type):
        if content_type == "text/plain":
            tokens = _text(body, content_type, self.max_text_chars).split()
            return None, tokens
        request = _parse_json(body)
        if "tokens" in request:
            tokens = request["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t and not t.isspace() for t in tokens):
                raise RequestError(422, "'tokens' must be a list of non-empty strings, e.g. "
                                        '{"tokens": ["EU", "rejects", "German", "call"]}.')
            length = sum(len(t) for t in tokens) + max(len(tokens) - 1, 0)
        elif "text" in request:
            text = request["text"]
            if not isinstance(text, str):
                raise RequestError(422, f"'text' must be a string, got {type(text).__name__}.")
            tokens, length = text.split(), len(text)
        else:
            raise RequestError(422, 'the JSON body needs a "text" (a string) or a "tokens" (a list of strings) field; '
                                    f"got the fields {sorted(request)}.")
        if length > self.max_text_chars:
            raise RequestError(413, f"the text has {length:,} characters, over the limit of {self.max_text_chars:,} "
                                    "(--max-text-chars); send it in shorter pieces.")
        return None, tokens  # sentences of any length share a batch: the tagger pads and masks

    def run(self, inputs, topks):
        out = []
        with torch.inference_mode():
            tagged_sentences = self.model.tag(inputs)
        for tagged in tagged_sentences:
            entities = [{"type": t, "start": s, "end": e, "text": text} for t, s, e, text in tagged.entities]
            out.append({"tokens": tagged.tokens, "tags": tagged.tags, "entities": entities})
        return out

    def topk_limit(self):
        return None


def _text(body: bytes, content_type: str, max_chars: int) -> str:
    """The ``text`` of a JSON body (or a text/plain body), at most ``max_chars`` characters."""
    if content_type == "text/plain":
        text = body.decode("utf-8", errors="replace")
    else:
        request = _parse_json(body)
        if "text" not in request:
            raise RequestError(422, f'the JSON body needs a "text" field (a string); got the fields {sorted(request)}.')
        text = request["text"]
        if not isinstance(text, str):
            raise RequestError(422, f"'text' must be a string, got {type(text).__name__}.")
    if len(text) > max_chars:
        raise RequestError(413, f"the text has {len(text):,} characters, over the limit of {max_chars:,} "
                                "(--max-text-chars); send it in shorter pieces.")
    return text


@dataclass
class TextClassifier(Servable):
    """BERT with a sequence-classification head, its text read by the tokenizer of its folder."""

    tokenizer: Any = None  # a tokenizers.Tokenizer
    max_text_chars: int = 10_000
    max_tokens: int = 512  # the model's max_positions
    pad_id: int = 0

    num_inputs: int = 2  # input_ids, attention_mask[, token_type_ids]; 1: an export without the mask

    def parse(self, body, content_type):
        text = _text(body, content_type, self.max_text_chars)
        ids = self.tokenizer.encode(text).ids
        if len(ids) > self.max_tokens:
            raise RequestError(413, f"the text is {len(ids):,} tokens, over the model's {self.max_tokens} "
                                    "(max_positions); send it in shorter pieces.")
        # texts of any length share a batch, padded and masked; without a mask input, only equal lengths
        return (None if self.num_inputs > 1 else len(ids)), np.asarray(ids, dtype=np.int64)

    def run(self, inputs, topks):
        ids = np.full((len(inputs), max(len(x) for x in inputs)), self.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, x in enumerate(inputs):
            ids[row, :len(x)], mask[row, :len(x)] = x, 1
        arrays = [ids, mask, np.zeros_like(ids)][:self.num_inputs]  # the third: token_type_ids, all segment 0
        probs = _softmax(self.backend(*arrays))
        return [{"top": _top(p, self.labels, k)} for p, k in zip(probs, topks)]


@dataclass
class NextToken(Servable):
    """GPT-2: the most probable next tokens after a text, read by the tokenizer of its folder."""

    tokenizer: Any = None  # a tokenizers.Tokenizer
    max_text_chars: int = 10_000
    max_tokens: int = 1024  # the model's max_positions
    num_inputs: int = 1  # input_ids[, attention_mask]

    def parse(self, body, content_type):
        text = _text(body, content_type, self.max_text_chars)
        ids = self.tokenizer.encode(text).ids
        if not ids:
            raise RequestError(422, "the text gives no tokens; send at least one word to continue.")
        if len(ids) > self.max_tokens:
            raise RequestError(413, f"the text is {len(ids):,} tokens, over the model's {self.max_tokens} "
                                    "(max_positions); send its end only.")
        return None, np.asarray(ids, dtype=np.int64)

    def run(self, inputs, topks):
        # padding on the right: causal attention keeps every real position blind to the pads after it
        ids = np.zeros((len(inputs), max(len(x) for x in inputs)), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, x in enumerate(inputs):
            ids[row, :len(x)], mask[row, :len(x)] = x, 1
        logits = self.backend(*[ids, mask][:self.num_inputs])
        last = logits[np.arange(len(inputs)), [len(x) - 1 for x in inputs]]
        out = []
        for probs, k in zip(_softmax(last), topks):
            order = np.argsort(-probs, kind="stable")[:k]
            out.append({"next": [{"id": int(i), "token": self.tokenizer.decode([int(i)]), "prob": float(probs[i])}
                                 for i in order]})
        return out

    def topk_limit(self):
        return int(self.config["vocab_size"])


@dataclass
class GraphModel(Servable):
    in_channels: int = 0
    node_level: bool = True
    union: bool = True  # graphs batch as one disjoint union; False: an export without the batch input
    max_nodes: int = 100_000

    def parse(self, body, content_type):
        request = _parse_json(body)
        missing = [k for k in ("x", "edge_index") if k not in request]
        if missing:
            raise RequestError(422, f"the JSON body is missing {' and '.join(map(repr, missing))}: send "
                                    '{"x": [[features of node 0], ...], "edge_index": [[sources], [targets]]}.')
        try:
            x = np.asarray(request["x"], dtype=np.float32)
        except (ValueError, TypeError):
            raise RequestError(422, "'x' must be a list of rows of numbers, one row per node, all of the "
                                    f"same length ({self.in_channels}).") from None
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != self.in_channels:
            raise RequestError(422, f"'x' must hold one row of {self.in_channels} numbers per node (at least one "
                                    f"node); got shape {list(x.shape)}.")
        if x.shape[0] > self.max_nodes:
            raise RequestError(413, f"{x.shape[0]:,} nodes is over the limit of {self.max_nodes:,}.")
        if not np.isfinite(x).all():
            raise RequestError(422, "'x' holds a NaN or an infinite value.")
        edges = request["edge_index"]
        shape_ok = (isinstance(edges, list) and len(edges) == 2 and all(isinstance(r, list) for r in edges)
                    and len(edges[0]) == len(edges[1]))
        if not shape_ok or not all(type(v) is int for row in edges for v in row):
            raise RequestError(422, "'edge_index' must be two lists of integer node ids of the same length: "
                                    "[[sources], [targets]].")
        edge_index = np.asarray(edges, dtype=np.int64).reshape(2, -1)
        if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= x.shape[0]):
            bad = int(edge_index.max() if edge_index.max() >= x.shape[0] else edge_index.min())
            raise RequestError(422, f"'edge_index' names node {bad}, but the graph has {x.shape[0]} nodes "
                                    f"(ids 0..{x.shape[0] - 1}).")
        return (None if self.union else object()), (x, edge_index)  # object(): a key of its own, run alone

    def run(self, inputs, topks):
        # a batch of graphs is their disjoint union: node ids shifted past the earlier graphs' nodes. Messages
        # never cross between the parts, and a graph classifier pools each part by its batch vector
        sizes = [x.shape[0] for x, _ in inputs]
        offsets = np.cumsum([0, *sizes[:-1]])
        x = np.concatenate([x for x, _ in inputs])
        edge_index = np.concatenate([e + o for (_, e), o in zip(inputs, offsets)], axis=1)
        if self.node_level:
            probs = _softmax(self.backend(x, edge_index))
            return [{"nodes": [{"node": i, "top": _top(p, self.labels, k)} for i, p in enumerate(part)]}
                    for part, k in zip(np.split(probs, offsets[1:]), topks)]
        batch = [np.repeat(np.arange(len(inputs)), sizes)] if self.union else []
        probs = _softmax(self.backend(x, edge_index, *batch))
        return [{"top": _top(p, self.labels, k)} for p, k in zip(probs, topks)]


# ------------------------------------------------------------------------------------------------
# Loading: a save_pretrained directory and / or an exported ONNX file with its sidecar
# ------------------------------------------------------------------------------------------------


def _read_sidecar(onnx_path: Path) -> dict:
    sidecar = Path(str(onnx_path) + ".json")
    if not onnx_path.is_file():
        raise InputError(f"{onnx_path}: no such ONNX file; write it with `zoo export NAME --pretrained DIR "
                         f"--format onnx --out {onnx_path}`.")
    if not sidecar.is_file():
        raise InputError(f"{sidecar} is missing: the ONNX file needs the sidecar JSON that `zoo export` writes "
                         "beside it (input names, data config, labels); export it again.")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{sidecar} is not valid JSON ({exc}); export the model again.") from None
    missing = [k for k in ("architecture", "config", "inputs") if k not in meta]
    if missing or meta.get("format", "onnx") != "onnx":
        raise InputError(f"{sidecar} is not a zoo ONNX sidecar (missing {missing or 'format: onnx'}); "
                         "export the model again with `zoo export ... --format onnx`.")
    return meta


def load_servable(pretrained: str | None = None, onnx: str | None = None, *, topk: int = 5,
                  max_text_chars: int = 10_000, img_size: int | None = None, mean=None, std=None,
                  threads: int | None = None) -> Servable:
    """What :func:`create_app` serves: the model of a ``save_pretrained`` directory, or the ONNX file
    exported from it (``onnx``; its sidecar ``onnx + ".json"`` supplies what the directory would)."""
    import zoo
    from zoo.predict import class_labels, data_config
    from zoo.shared.registry import get_entry

    if pretrained is None and onnx is None:
        raise InputError("zoo serve needs a model: --pretrained DIR (a save_pretrained directory) and/or "
                         "--onnx PATH (a file written by `zoo export --format onnx`).")
    model, meta = None, None
    if pretrained is not None:
        model = zoo.from_pretrained(pretrained)  # names a missing directory, weights or config
        name, config = model.zoo_name, dict(model.zoo_config)
        id2label, pretrained_cfg = getattr(model, "id2label", None), getattr(model, "pretrained_cfg", None)
        where = str(pretrained)
    if onnx is not None:
        meta = _read_sidecar(Path(onnx))
        if model is not None and meta["architecture"] != name:
            raise InputError(f"{onnx} was exported from {meta['architecture']} but {pretrained} holds {name}; "
                             "serve matching files.")
        name, config = meta["architecture"], dict(meta["config"])
        id2label = meta.get("id2label") or (id2label if model is not None else None)
        pretrained_cfg = meta.get("pretrained_cfg") or (pretrained_cfg if model is not None else None)
        where = f"{onnx}.json"
    zoo.list_models()  # the domains register their models (from_pretrained did when given a directory)
    entry = get_entry(name)
    if entry.task not in TASKS:
        raise InputError(f"{name} is a {entry.domain} {entry.task} model; zoo serve answers "
                         f"{', '.join(TASKS)} models.")
    if onnx is not None:
        input_names = [i["name"] for i in meta["inputs"]]
        backend = OnnxBackend(Path(onnx), input_names, threads)
    else:
        backend = TorchBackend(model)
    num_classes = int(config.get("num_classes", 0))
    labels = class_labels(where, id2label, num_classes) if num_classes else None
    common = dict(name=name, task=entry.task, backend=backend, labels=labels, topk=topk, config=config,
                  num_params=sum(p.numel() for p in model.parameters()) if model is not None else None)

    if entry.task == "image-classification":
        in_chans = int(config.get("in_chans", 3))
        data = data_config(where, pretrained_cfg or {}, in_chans,
                            {"input_size": img_size, "mean": mean, "std": std})
        if meta is not None:  # an export with a fixed image size takes only that size
            shape = meta["inputs"][0].get("shape", [])
            fixed = [s for s in shape[2:] if isinstance(s, int)]
            if len(fixed) == 2 and tuple(fixed) != tuple(data.input_size):
                raise InputError(f"{onnx} takes {fixed[0]}x{fixed[1]} images but the data config asks for "
                                 f"{data.input_size[0]}x{data.input_size[1]}; export at that size or drop --img-size.")
        spec = {"input_size": [in_chans, *data.input_size], "mean": list(data.mean), "std": list(data.std),
                "interpolation": data.interpolation, "crop_pct": data.crop_pct}
        return ImageClassifier(**common, content_types=IMAGE_TYPES, spec=spec, data=data, transform=data.transform())
    if entry.task == "audio-classification":
        rate = int(config["sample_rate"])
        return AudioClassifier(**common, content_types=AUDIO_TYPES, spec={"sample_rate": rate}, sample_rate=rate)
    if entry.task == "sequence-labelling":
        if model is None:
            raise InputError(f"{name} is served with its Viterbi decoding in torch: pass --pretrained DIR "
                             "(ONNX export of the tagger covers the emissions only).")
        if getattr(model, "vocabs", None) is None:
            raise InputError(f"{pretrained} holds a {name} without vocabularies, so it cannot read text; "
                             "serve a tagger saved by the recipe (zoo train bilstm_crf), which keeps them.")
        if onnx is not None:
            raise InputError("the tagger is served in torch (its Viterbi decoding is not in the ONNX graph); "
                             "drop --onnx.")
        tags = model.vocabs["tags"].tokens
        return Tagger(**{**common, "labels": None}, content_types=(*JSON_TYPES, "text/plain"),
                      spec={"tags": tags, "max_text_chars": max_text_chars}, model=model,
                      max_text_chars=max_text_chars)
    if entry.task == "text-encoding":
        from zoo.nlp.hf import load_tokenizer

        if config.get("head") != "sequence":
            raise InputError(f"{name} with head={config.get('head')!r} is an encoder; zoo serve answers BERT with a "
                             "sequence-classification head (head='sequence').")
        if pretrained is None:
            raise InputError("a text classifier needs --pretrained DIR too: its tokenizer files (tokenizer.json "
                             "or vocab.txt) are read from there.")
        tokenizer = load_tokenizer(pretrained)  # names the files it looked for when there are none
        num_inputs = len(meta["inputs"]) if onnx is not None else 2
        if num_inputs not in (1, 2, 3):
            raise InputError(f"{onnx} takes {[i['name'] for i in meta['inputs']]}; a BERT export takes input_ids"
                             "[, attention_mask[, token_type_ids]].")
        return TextClassifier(**common, content_types=(*JSON_TYPES, "text/plain"),
                              spec={"max_text_chars": max_text_chars, "max_tokens": int(config["max_positions"])},
                              tokenizer=tokenizer, max_text_chars=max_text_chars,
                              max_tokens=int(config["max_positions"]), pad_id=int(config.get("pad_token_id", 0)),
                              num_inputs=num_inputs)
    if entry.task == "language-modelling":
        from zoo.nlp.hf import load_tokenizer

        if pretrained is None:
            raise InputError("a language model needs --pretrained DIR too: its tokenizer files (tokenizer.json, "
                             "or vocab.json + merges.txt) are read from there.")
        num_inputs = len(meta["inputs"]) if onnx is not None else 1
        if num_inputs not in (1, 2):
            raise InputError(f"{onnx} takes {[i['name'] for i in meta['inputs']]}; a GPT-2 export takes input_ids"
                             "[, attention_mask].")
        return NextToken(**{**common, "labels": None}, content_types=(*JSON_TYPES, "text/plain"),
                         spec={"max_text_chars": max_text_chars, "max_tokens": int(config["max_positions"])},
                         tokenizer=load_tokenizer(pretrained), max_text_chars=max_text_chars,
                         max_tokens=int(config["max_positions"]), num_inputs=num_inputs)
    in_channels = int(config["in_channels"])
    node_level = entry.task == "node-classification"
    # a graph classifier pools a union by its batch vector, an input an export may not have
    union = node_level or onnx is None or len(meta["inputs"]) >= 3
    return GraphModel(**common, content_types=JSON_TYPES, spec={"in_channels": in_channels},
                      in_channels=in_channels, node_level=node_level, union=union)


# ------------------------------------------------------------------------------------------------
# Dynamic batching
# ------------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    key: Hashable
    item: Any
    topk: int
    future: asyncio.Future


class Batcher:
    """One asyncio queue and one task that groups waiting requests into batches and runs each batch
    on a single model thread (a model is not assumed thread-safe; torch parallelises inside it)."""

    def __init__(self, run: Callable[[list, list], list], max_batch: int, max_wait_ms: float):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[_Pending] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-model")
        self.batch_sizes: Counter[int] = Counter()
        self.task: asyncio.Task | None = None
        self.arriving = 0  # requests received and still being read or parsed (counted on the event loop)

    @contextlib.contextmanager
    def arrival(self) -> Iterator[None]:
        """Around reading and parsing a request: while any is, a batch waits for it (up to max_wait);
        when none is, a batch runs at once rather than wait for requests that have not come."""
        self.arriving += 1
        try:
            yield
        finally:
            self.arriving -= 1

    async def submit(self, key: Hashable, item: Any, topk: int) -> dict:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(key, item, topk, future))
        return await future

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        pending = [await self.queue.get()]
        deadline = loop.time() + self.max_wait
        while len(pending) < self.max_batch:
            if not self.queue.empty():
                pending.append(self.queue.get_nowait())
                continue
            timeout = deadline - loop.time()
            if timeout <= 0 or not self.arriving:  # wait only for requests already being read or parsed
                break
            try:
                pending.append(await asyncio.wait_for(self.queue.get(), timeout))
            except TimeoutError:
                break
        return pending

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._collect()
            groups: dict[Any, list[_Pending]] = {}
            for p in pending:
                groups.setdefault(p.key, []).append(p)
            for group in groups.values():
                group = [p for p in group if not p.future.done()]  # a client that went away
                if not group:
                    continue
                self.batch_sizes[len(group)] += 1
                try:
                    results = await loop.run_in_executor(self.executor, self.run, [p.item for p in group],
                                                         [p.topk for p in group])
                    if len(results) != len(group):  # never leave a request waiting for an answer
                        raise RuntimeError(f"the model call gave {len(results)} answers for {len(group)} requests")
                except Exception as exc:  # answered by each waiting request's handler
                    for p in group:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                for p, result in zip(group, results):
                    if not p.future.done():
                        p.future.set_result(result)

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict:
        sizes = dict(sorted(self.batch_sizes.items()))
        return {"batches": sum(sizes.values()), "batched_requests": sum(k * n for k, n in sizes.items()),
                "batch_sizes": {str(k): n for k, n in sizes.items()}, "max_batch_seen": max(sizes, default=0)}


# ------------------------------------------------------------------------------------------------
# The app
# ------------------------------------------------------------------------------------------------


def _content_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _accepts(content_type: str, allowed: tuple[str, ...]) -> bool:
    return any(content_type == a or (a.endswith("/*") and content_type.startswith(a[:-1])) for a in allowed)


async def _read_body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (by its Content-Length, or while
    reading a chunked one), never held whole when too large."""
    declared = request.headers.get("content-length")
    mb = f"{limit / 2**20:g} MB"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is {int(declared):,} bytes, over the upload limit of {limit:,} bytes "
                                f"({mb}, --max-upload-mb).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body passed the upload limit of {limit:,} bytes ({mb}, --max-upload-mb) "
                                    "while it was being read.")
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload(request, body: bytes, limit: int) -> bytes:
    """The file of a multipart body (the field ``file``, else the first file)."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    request._body = body  # request.form() parses what was read under the limit
    try:
        form = await request.form(max_files=4, max_fields=16, max_part_size=limit)
    except HTTPException as exc:
        raise RequestError(400, f"the multipart body cannot be parsed ({exc.detail}).") from None
    except Exception as exc:  # python-multipart's parse errors
        raise RequestError(400, f"the multipart body cannot be parsed ({type(exc).__name__}: {exc}).") from None
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    chosen = form.get("file") if isinstance(form.get("file"), UploadFile) else (files[0] if files else None)
    if chosen is None:
        raise RequestError(422, f"the multipart body has no file (fields: {sorted(form.keys())}); send it as "
                                "-F file=@input.png.")
    return await chosen.read()


def create_app(servable: Servable, *, max_batch: int = 16, max_wait_ms: float = 5.0,
               max_upload_mb: float = 10.0):
    """The FastAPI app that serves ``servable`` (see the module docstring for its endpoints)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    if not (isinstance(max_batch, int) and max_batch >= 1):
        raise InputError(f"max_batch must be an integer >= 1, got {max_batch!r}.")
    if not (max_wait_ms >= 0 and math.isfinite(max_wait_ms)):
        raise InputError(f"max_wait_ms must be >= 0 ms, got {max_wait_ms!r}.")
    if not (max_upload_mb > 0 and math.isfinite(max_upload_mb)):
        raise InputError(f"max_upload_mb must be > 0, got {max_upload_mb!r}.")
    limit = int(max_upload_mb * 2**20)
    batcher = Batcher(servable.run, max_batch, max_wait_ms)
    counts: Counter[str] = Counter()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"zoo serve: {servable.name}", lifespan=lifespan)
    app.state.servable, app.state.batcher = servable, batcher

    def model_card() -> dict:
        import dataclasses

        import zoo

        config = dict(servable.config)
        if isinstance(config.get("vocab"), dict):  # the tagger's vocabularies: their sizes, not 20,000 words
            config["vocab"] = {k: len(v.get("tokens", [])) for k, v in config["vocab"].items()}
        # the architecture's card (domain, task, paper, inputs) with the served model's config and size
        card = zoo.model_info(servable.name)
        card = dataclasses.replace(card, config=config, num_params=servable.num_params or card.num_params, weights=[])
        info = {k: v for k, v in dataclasses.asdict(card).items() if k not in ("weights", "default_tag")}
        info["num_params"] = servable.num_params  # None on ONNX Runtime without the torch model
        return {**info, "card": str(card).split("\n  weights")[0], "labels": servable.labels,
                "backend": servable.backend.name,
                "input": {"content_types": list(servable.content_types), **servable.spec},
                "topk": servable.topk, "batching": {"max_batch": max_batch, "max_wait_ms": max_wait_ms},
                "limits": {"max_upload_bytes": limit}}

    info = model_card()

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": servable.name}

    @app.get("/info")
    async def get_info():
        return info

    @app.get("/metrics")
    async def metrics():
        return {"responses": dict(counts), **batcher.stats()}

    def answer(status: int, body: dict) -> JSONResponse:
        counts[str(status)] += 1
        return JSONResponse(body, status_code=status)

    @app.post("/predict")
    async def predict(request: Request):
        try:
            content_type = _content_type(request)
            if not _accepts(content_type, servable.content_types):
                raise RequestError(415, f"{servable.name} ({servable.task}) takes "
                                        f"{', '.join(servable.content_types)}; got "
                                        f"{content_type or 'no Content-Type'}.")
            topk = servable.topk
            if "topk" in request.query_params:
                text, most = request.query_params["topk"], servable.topk_limit()
                if not text.isdigit() or int(text) < 1 or (most and int(text) > most):
                    raise RequestError(422, f"topk must be an integer in [1, {most or 'classes'}], got {text!r}.")
                topk = int(text)
            with batcher.arrival():
                body = await _read_body(request, limit)
                if content_type == "multipart/form-data":
                    body = await _upload(request, body, limit)
                if not body:
                    raise RequestError(422, "the body is empty; send the input (see GET /info for what it takes).")
                key, item = await asyncio.to_thread(servable.parse, body, content_type)
            return answer(200, await batcher.submit(key, item, topk))  # queued with no await in between
        except RequestError as exc:
            return answer(exc.status, {"error": str(exc)})
        except ZooError as exc:  # a model-side check on an input the parser let through
            return answer(422, {"error": str(exc)})
        except Exception as exc:
            log.exception("zoo serve: /predict failed")
            return answer(500, {"error": f"internal error ({type(exc).__name__}: {exc}); the server is still up."})

    return app


# ------------------------------------------------------------------------------------------------
# Running it: the command line, and a server in a background thread for tests and benchmarks
# ------------------------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port), or a ZooError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without it a small answer written in two parts waits for the client's
    # delayed ACK (Nagle), 40 ms a request on Linux, measured with a trivial endpoint (2 ms with it)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ZooError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host.") from None
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL once it answers."""
    import uvicorn

    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="zoo-serve")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the uvicorn server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is in [0, 65535], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zoo serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a saved model over HTTP: GET /health, /info, /metrics; POST /predict.",
        epilog="examples:\n"
               "  zoo serve --pretrained runs/digits --port 8000\n"
               "  curl -F file=@digit.png http://127.0.0.1:8000/predict\n"
               "  curl -H 'Content-Type: application/json' -d '{\"text\": \"EU rejects German call\"}' "
               "http://127.0.0.1:8000/predict")
    p.add_argument("--pretrained", metavar="DIR", help="a save_pretrained directory (or hf-hub:org/name)")
    p.add_argument("--onnx", metavar="PATH", help="run on ONNX Runtime: a file from `zoo export --format onnx` "
                                                  "(with its PATH.json sidecar)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-batch", type=positive_int, default=16, metavar="N",
                   help="most requests run as one batch (default 16; 1 turns batching off)")
    p.add_argument("--max-wait-ms", type=_non_negative_float, default=5.0, metavar="MS",
                   help="how long the first request of a batch waits for others (default 5)")
    p.add_argument("--max-upload-mb", type=_positive_float, default=10.0, metavar="MB",
                   help="largest request body; a larger one gets 413 (default 10)")
    p.add_argument("--max-text-chars", type=positive_int, default=10_000, metavar="N",
                   help="longest text (tagger, BERT, GPT-2); a longer one gets 413 (default 10000)")
    p.add_argument("--topk", type=positive_int, default=5, metavar="K",
                   help="classes (or next tokens) in each answer (default 5; ?topk=K per request)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads the model computes with (torch / ONNX Runtime); default: theirs")
    p.add_argument("--img-size", type=positive_int, metavar="PX", help="image side when the saved model records none")
    p.add_argument("--mean", type=floats, help="image mean when the saved model records none (0.5,0.5,0.5)")
    p.add_argument("--std", type=floats, help="image std when the saved model records none")
    return p


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    servable = load_servable(args.pretrained, args.onnx, topk=args.topk, max_text_chars=args.max_text_chars,
                             img_size=args.img_size, mean=args.mean, std=args.std, threads=args.threads)
    app = create_app(servable, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     max_upload_mb=args.max_upload_mb)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"zoo serve: {servable.name} ({servable.task}, {servable.backend.name}) on http://{host}:{port} "
          f"(max batch {args.max_batch}, wait {args.max_wait_ms:g} ms); Ctrl-C stops", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
