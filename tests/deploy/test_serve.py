"""``zoo serve``: real uvicorn servers on 127.0.0.1 (background threads, one per model), a real HTTP
client (httpx), answers compared with the model called directly.

Models are tiny and saved in the test: a 1-channel resnet on 16x16 images (with id2label and
pretrained_cfg), the BiLSTM-CRF tagger with its vocabularies, an M5 audio classifier at 8 kHz, a
GCN and a BERT sequence classifier with a WordPiece vocab.txt; the resnet and the BERT are also
exported with ``zoo.deploy.export`` (ONNX + sidecar JSON) and served on ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import zoo
from zoo.deploy.serve import create_app, load_servable, serve_in_thread

SIZE, MEAN, STD = 16, 0.3, 0.4
LABELS = {str(i): f"digit-{i}" for i in range(10)}
UPLOAD_MB = 0.05  # 52,428 bytes: the image server's upload limit, so an oversized body is cheap to send
RATE = 8000


# ------------------------------------------------------------------------------------------------
# saved models and the servers
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def served(app):
    """A client of ``app`` served over HTTP for a module's tests; when they are done (on whichever
    xdist worker ran them), the server must have answered something and never with a 500: every bad
    request the tests sent got its 4xx."""
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client
        responses = client.get("/metrics").json()["responses"]
        assert responses and "500" not in responses, responses


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def image_model(workdir):
    torch.manual_seed(0)
    model = zoo.create("resnet18", num_classes=10, in_chans=1, layers=[1, 1, 1, 1], base_channels=8).eval()
    model.id2label = LABELS
    model.pretrained_cfg = {"input_size": [1, SIZE, SIZE], "mean": [MEAN], "std": [STD],
                            "interpolation": "bilinear", "crop_pct": 1.0}
    zoo.save_pretrained(model, workdir / "digits")
    return model, workdir / "digits"


def _png(seed: int, mode: str = "L") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (SIZE, SIZE) if mode == "L" else (SIZE, SIZE, 3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format="PNG")
    return buf.getvalue()


def _direct_image(model, png: bytes) -> np.ndarray:
    """Probabilities computed by hand: grey pixels / 255, normalised, the model called in torch."""
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32) / 255
    with torch.no_grad():
        return model(((torch.tensor(grey) - MEAN) / STD)[None, None]).softmax(-1)[0].numpy()


def _check_top(top: list[dict], probs: np.ndarray, k: int = 5, labels=LABELS):
    order = np.argsort(-probs)[:k]
    assert [t["index"] for t in top] == order.tolist()
    assert [t["label"] for t in top] == [labels[str(i)] if labels else str(i) for i in order]
    np.testing.assert_allclose([t["prob"] for t in top], probs[order], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def image_server(image_model):
    app = create_app(load_servable(str(image_model[1])), max_batch=8, max_wait_ms=20, max_upload_mb=UPLOAD_MB)
    with served(app) as client:
        yield client


@pytest.fixture(scope="module")
def onnx_file(image_model, workdir) -> Path:
    """The resnet's directory exported by `zoo export --format onnx` (the dynamo exporter; the sidecar
    JSON beside it)."""
    from zoo.deploy.export import export

    return export(str(image_model[1]), "onnx", workdir / "digits.onnx")


@pytest.fixture(scope="module")
def onnx_server(onnx_file):
    """The resnet served from its ONNX file alone, on ONNX Runtime."""
    app = create_app(load_servable(onnx=str(onnx_file), threads=1), max_batch=8, max_wait_ms=20)
    with served(app) as client:
        yield client


# ------------------------------------------------------------------------------------------------
# image classifier
# ------------------------------------------------------------------------------------------------


def test_health_info_and_metrics(image_server):
    assert image_server.get("/health").json() == {"status": "ok", "model": "resnet18"}
    info = image_server.get("/info").json()
    assert (info["name"], info["domain"], info["task"], info["backend"]) == (
        "resnet18", "vision", "image-classification", "torch")
    assert info["labels"] == [LABELS[str(i)] for i in range(10)]
    assert info["config"]["num_classes"] == 10 and info["config"]["base_channels"] == 8
    assert info["input"]["input_size"] == [1, SIZE, SIZE] and info["input"]["mean"] == [MEAN]
    assert info["batching"] == {"max_batch": 8, "max_wait_ms": 20}
    assert info["card"].startswith("resnet18  (vision / image-classification")
    assert info["limits"]["max_upload_bytes"] == int(UPLOAD_MB * 2**20)
    assert set(image_server.get("/metrics").json()) >= {"batches", "batch_sizes", "max_batch_seen", "responses"}


def test_image_prediction_equals_direct_forward(image_server, image_model):
    model = image_model[0]
    grey, colour = _png(1), _png(2, "RGB")
    multipart = image_server.post("/predict", files={"file": ("grey.png", grey, "image/png")})
    assert multipart.status_code == 200, multipart.text
    _check_top(multipart.json()["top"], _direct_image(model, grey))
    raw = image_server.post("/predict?topk=3", content=colour, headers={"content-type": "image/png"})
    assert raw.status_code == 200, raw.text
    _check_top(raw.json()["top"], _direct_image(model, colour), k=3)


def _concurrent(client, n_requests: int, n_threads: int, send) -> tuple[list, float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(n_threads) as pool:
        responses = list(pool.map(lambda i: send(client, i), range(n_requests)))
    return responses, time.perf_counter() - start


def test_concurrent_requests_are_batched_and_correct(image_server, image_model):
    """32 requests from 8 threads: every answer is its own image's, and the server ran some together."""
    model = image_model[0]
    images = [_png(100 + i) for i in range(32)]
    before = image_server.get("/metrics").json()
    responses, elapsed = _concurrent(image_server, 32, 8, lambda c, i: c.post(
        "/predict", content=images[i], headers={"content-type": "image/png"}))
    assert elapsed < 30
    for png, r in zip(images, responses):
        assert r.status_code == 200, r.text
        _check_top(r.json()["top"], _direct_image(model, png))
    after = image_server.get("/metrics").json()
    assert after["batched_requests"] - before["batched_requests"] == 32
    assert after["max_batch_seen"] > 1, after  # batching grouped concurrent requests
    assert after["batches"] - before["batches"] < 32


def _chunked(data: bytes, size: int = 4096):
    for i in range(0, len(data), size):
        yield data[i:i + size]


PNG = _png(7)
LIMIT = int(UPLOAD_MB * 2**20)
IMAGE_BAD = {
    # name: (request kwargs, status, words the message must hold)
    "json to an image model": (dict(json={"text": "hi"}), 415, ["application/json", "image/*"]),
    "no content type": (dict(content=PNG, headers={"content-type": ""}), 415, ["no Content-Type"]),
    "undecodable image": (dict(content=b"not an image at all", headers={"content-type": "image/png"}), 400,
                          ["cannot decode"]),
    "truncated png": (dict(content=PNG[: len(PNG) // 2], headers={"content-type": "image/png"}), 400,
                      ["cannot decode"]),
    "oversized upload": (dict(content=b"\0" * (LIMIT + 1), headers={"content-type": "image/png"}), 413,
                         [f"the body is {LIMIT + 1:,} bytes", f"limit of {LIMIT:,} bytes", "--max-upload-mb"]),
    "oversized chunked upload": (dict(content=_chunked(b"\0" * (4 * LIMIT)), headers={"content-type": "image/png"}),
                                 413, ["while it was being read"]),
    "png header then zeros": (dict(content=b"\x89PNG\r\n\x1a\n" + b"\0" * 64, headers={"content-type": "image/png"}),
                              400, ["cannot decode"]),
    "multipart without a file": (dict(files={"name": (None, "x")}), 422, ["no file"]),
    "malformed multipart": (dict(content=b"--nope\r\ngarbage", headers={"content-type": "multipart/form-data"}), 400,
                            ["multipart"]),
    "empty body": (dict(content=b"", headers={"content-type": "image/png"}), 422, ["empty"]),
    "topk not a number": (dict(content=PNG, headers={"content-type": "image/png"}, params={"topk": "x"}), 422,
                          ["topk"]),
    "topk over the classes": (dict(content=PNG, headers={"content-type": "image/png"}, params={"topk": "11"}), 422,
                              ["[1, 10]"]),
}


@pytest.mark.parametrize("case", list(IMAGE_BAD))
def test_bad_image_requests_get_4xx_and_the_server_goes_on(image_server, case):
    kwargs, status, words = IMAGE_BAD[case]
    r = image_server.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    for word in words:
        assert word in message
    assert image_server.post("/predict", content=PNG, headers={"content-type": "image/png"}).status_code == 200


# ------------------------------------------------------------------------------------------------
# ONNX Runtime backend
# ------------------------------------------------------------------------------------------------


def test_onnx_backend_answers_as_torch(onnx_server, image_server):
    assert onnx_server.get("/info").json()["backend"] == "onnxruntime"
    images = [_png(200 + i) for i in range(12)]
    send = lambda c, i: c.post("/predict", content=images[i], headers={"content-type": "image/png"})  # noqa: E731
    from_onnx, _ = _concurrent(onnx_server, 12, 4, send)
    for png, r in zip(images, from_onnx):
        assert r.status_code == 200, r.text
        expected = send(image_server, images.index(png)).json()["top"]
        assert [t["index"] for t in r.json()["top"]] == [t["index"] for t in expected]
        np.testing.assert_allclose([t["prob"] for t in r.json()["top"]], [t["prob"] for t in expected], atol=1e-5)
    assert onnx_server.get("/metrics").json()["max_batch_seen"] >= 1


def test_onnx_sidecar_missing_is_an_error(workdir, image_model):
    lone = workdir / "lone.onnx"
    lone.write_bytes(b"")
    with pytest.raises(zoo.InputError, match="lone.onnx.json is missing"):
        load_servable(onnx=str(lone))


# ------------------------------------------------------------------------------------------------
# tagger
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagger(workdir):
    from zoo.nlp.bilstm_crf import _test_spec

    torch.manual_seed(0)
    model = zoo.create("bilstm_crf", **_test_spec("lstm").config).eval()
    zoo.save_pretrained(model, workdir / "tagger")
    app = create_app(load_servable(str(workdir / "tagger"), max_text_chars=60), max_batch=8, max_wait_ms=20)
    with served(app) as client:
        yield model, client


SENTENCES = ["EU rejects German call", "to boycott British lamb", "German lamb", "EU",
             "EU rejects German call to boycott British lamb", "unknown words here too"]


def test_tagger_answers_tags_and_entities(tagger):
    model, client = tagger
    for text in SENTENCES[:2]:
        r = client.post("/predict", json={"text": text})
        assert r.status_code == 200, r.text
        expected = model.tag([text.split()])[0]
        assert r.json()["tokens"] == expected.tokens and r.json()["tags"] == expected.tags
        assert [(e["type"], e["start"], e["end"], e["text"]) for e in r.json()["entities"]] == expected.entities
    by_tokens = client.post("/predict", json={"tokens": ["EU", "rejects"]}).json()
    assert by_tokens["tags"] == model.tag([["EU", "rejects"]])[0].tags
    assert client.get("/info").json()["input"]["tags"] == model.vocabs["tags"].tokens


def test_tagger_batches_sentences_of_any_length(tagger):
    model, client = tagger
    texts = SENTENCES * 4
    before = client.get("/metrics").json()["batches"]
    responses, _ = _concurrent(client, len(texts), 8, lambda c, i: c.post("/predict", json={"text": texts[i]}))
    for text, r in zip(texts, responses):
        assert r.json()["tags"] == model.tag([text.split()])[0].tags  # alone == inside a padded batch
    metrics = client.get("/metrics").json()
    assert metrics["max_batch_seen"] > 1 and metrics["batches"] - before < len(texts)


TAGGER_BAD = {
    "missing field": (dict(json={"sentence": "EU"}), 422, ['"text"', '"tokens"']),
    "text not a string": (dict(json={"text": 3}), 422, ["'text' must be a string"]),
    "tokens not strings": (dict(json={"tokens": ["EU", 3]}), 422, ["'tokens'"]),
    "text too long": (dict(json={"text": "EU " * 40}), 413, ["120 characters", "limit of 60"]),
    "tokens too long": (dict(json={"tokens": ["EU"] * 40}), 413, ["limit of 60"]),
    "malformed json": (dict(content=b'{"text": ', headers={"content-type": "application/json"}), 400, ["JSON"]),
    "json not an object": (dict(json=["EU"]), 422, ["object"]),
    "an image to a tagger": (dict(content=PNG, headers={"content-type": "image/png"}), 415, ["application/json"]),
}


@pytest.mark.parametrize("case", list(TAGGER_BAD))
def test_bad_text_requests_get_4xx_and_the_server_goes_on(tagger, case):
    kwargs, status, words = TAGGER_BAD[case]
    r = tagger[1].post("/predict", **kwargs)
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["error"]
    assert tagger[1].post("/predict", json={"text": "EU rejects"}).status_code == 200


# ------------------------------------------------------------------------------------------------
# audio classifier
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio(workdir):
    torch.manual_seed(0)
    model = zoo.create("m5", sample_rate=RATE, num_classes=5, channels=[4, 4, 8, 8]).eval()
    zoo.save_pretrained(model, workdir / "m5")
    app = create_app(load_servable(str(workdir / "m5")), max_batch=8, max_wait_ms=20)
    with served(app) as client:
        yield model, client


def _wav(seed: int, rate: int = RATE, seconds: float = 0.25) -> bytes:
    buf = io.BytesIO()
    wave = 0.1 * np.random.default_rng(seed).standard_normal(int(rate * seconds)).astype(np.float32)
    sf.write(buf, wave, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def test_audio_prediction_equals_direct_forward(audio, workdir):
    from zoo.audio.io import load_audio

    model, client = audio
    for seed, rate in ((0, RATE), (1, 16000)):  # the second is resampled to the model's 8 kHz
        wav = _wav(seed, rate)
        path = workdir / f"clip{seed}.wav"
        path.write_bytes(wav)
        with torch.no_grad():
            probs = model(load_audio(path, RATE)[0][None]).softmax(-1)[0].numpy()
        r = client.post("/predict", files={"file": ("clip.wav", wav, "audio/wav")})
        assert r.status_code == 200, r.text
        _check_top(r.json()["top"], probs, labels=None)


def test_audio_clips_of_one_length_batch_together(audio):
    model, client = audio
    clips = [_wav(10 + i) for i in range(16)]
    responses, _ = _concurrent(client, 16, 8, lambda c, i: c.post(
        "/predict", content=clips[i], headers={"content-type": "audio/wav"}))
    for wav, r in zip(clips, responses):
        wave = torch.tensor(sf.read(io.BytesIO(wav), dtype="float32")[0])
        with torch.no_grad():
            probs = model(wave[None]).softmax(-1)[0].numpy()
        _check_top(r.json()["top"], probs, labels=None)
    assert client.get("/metrics").json()["max_batch_seen"] > 1


@pytest.mark.parametrize("case,kwargs,status,word", [
    ("not audio", dict(content=b"RIFF....WAVEjunk" * 4, headers={"content-type": "audio/wav"}), 400, "upload"),
    ("truncated wav", dict(content=_wav(3)[:2000], headers={"content-type": "audio/wav"}), 400, "truncated"),
    ("json to an audio model", dict(json={"x": 1}), 415, "audio/*"),
])
def test_bad_audio_requests_get_4xx(audio, case, kwargs, status, word):
    r = audio[1].post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert word in r.json()["error"] and "/tmp" not in r.json()["error"]
    assert audio[1].post("/predict", content=_wav(4), headers={"content-type": "audio/wav"}).status_code == 200


# ------------------------------------------------------------------------------------------------
# graph model
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph(workdir):
    torch.manual_seed(0)
    model = zoo.create("gcn", in_channels=4, hidden_channels=8, num_classes=3).eval()
    zoo.save_pretrained(model, workdir / "gcn")
    app = create_app(load_servable(str(workdir / "gcn"), topk=2), max_batch=8, max_wait_ms=20)
    with served(app) as client:
        yield model, client


X = np.random.default_rng(0).standard_normal((5, 4)).round(3).tolist()
EDGES = [[0, 1, 1, 2, 3], [1, 0, 2, 1, 4]]


def test_graph_prediction_per_node_equals_direct_forward(graph):
    model, client = graph
    r = client.post("/predict", json={"x": X, "edge_index": EDGES})
    assert r.status_code == 200, r.text
    with torch.no_grad():
        probs = model(torch.tensor(X, dtype=torch.float32), torch.tensor(EDGES)).softmax(-1).numpy()
    nodes = r.json()["nodes"]
    assert [n["node"] for n in nodes] == list(range(5))
    for node, p in zip(nodes, probs):
        _check_top(node["top"], p, k=2, labels=None)


@pytest.mark.parametrize("body,word", [
    ({"x": X, "edge_index": [[0, 1], [1, 5]]}, "names node 5, but the graph has 5 nodes"),
    ({"x": X, "edge_index": [[0, -1], [1, 2]]}, "names node -1"),
    ({"x": X}, "missing 'edge_index'"),
    ({"edge_index": EDGES}, "missing 'x'"),
    ({"x": [[1.0, 2.0]] * 5, "edge_index": EDGES}, "one row of 4 numbers"),
    ({"x": [[1.0] * 4, [1.0] * 3], "edge_index": EDGES}, "same length"),
    ({"x": X, "edge_index": [[0, 1.5], [1, 2]]}, "integer node ids"),
    ({"x": X, "edge_index": [[0, 1, 2], [1, 2]]}, "same length"),
])
def test_bad_graphs_get_422(graph, body, word):
    r = graph[1].post("/predict", json=body)
    assert r.status_code == 422, r.text
    assert word in r.json()["error"]
    assert graph[1].post("/predict", json={"x": X, "edge_index": EDGES}).status_code == 200


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # a second process: imports torch and the zoo again
def test_zoo_serve_command_serves_over_http(image_model, onnx_file):
    """`python -m zoo serve --onnx FILE` in its own process (a fresh registry, ONNX Runtime, no torch model):
    it prints its URL, answers /health and /predict as the torch model does."""
    model = image_model[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "serve", "--onnx", str(onnx_file), "--port", "0",
                             "--threads", "1", "--topk", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split(" on ")[1].split()[0]
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert client.get("/health").json()["status"] == "ok"
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            r = client.post("/predict", content=PNG, headers={"content-type": "image/png"})
            _check_top(r.json()["top"], _direct_image(model, PNG), k=2)
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_errors_are_one_line(image_model, capsys):
    from zoo.cli import main

    assert main(["serve"]) == 1
    assert "needs a model: --pretrained DIR" in capsys.readouterr().err
    assert main(["serve", "--pretrained", "/nonexistent/model"]) == 1
    assert "zoo: error:" in capsys.readouterr().err
    assert main(["serve", "--pretrained", str(image_model[1]), "--max-batch", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
    with serve_in_thread(create_app(load_servable(str(image_model[1])))) as url:  # the port is taken
        port = url.rsplit(":", 1)[1]
        assert main(["serve", "--pretrained", str(image_model[1]), "--port", port]) == 1
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# BERT sequence classifier with a WordPiece vocabulary
# ------------------------------------------------------------------------------------------------

WORDS = "the a movie film was is good bad great awful not very plot acting and but".split()
SENTIMENT = {"0": "negative", "1": "neutral", "2": "positive"}


@pytest.fixture(scope="module")
def bert(workdir):
    from zoo.nlp.bert import TEST_SPEC
    from zoo.nlp.hf import load_tokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    torch.manual_seed(0)
    model = zoo.create("bert", **{**TEST_SPEC.config, "vocab_size": len(vocab)}).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(50)  # BERT's 0.02-std init gives near-uniform classes; spread them
    model.id2label = SENTIMENT
    directory = workdir / "bert"
    zoo.save_pretrained(model, directory)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    app = create_app(load_servable(str(directory)), max_batch=8, max_wait_ms=20)
    with served(app) as client:
        yield model, load_tokenizer(directory), client


def test_bert_text_classification_equals_direct_forward_alone_or_batched(bert):
    model, tokenizer, client = bert
    texts = ["the movie was good", "not a very great plot but the acting is awful", "bad", "Great film!"] * 3
    responses, _ = _concurrent(client, len(texts), 6, lambda c, i: c.post("/predict", json={"text": texts[i]}))
    for text, r in zip(texts, responses):
        assert r.status_code == 200, r.text
        with torch.no_grad():
            probs = model(torch.tensor([tokenizer.encode(text).ids])).softmax(-1)[0].numpy()
        _check_top(r.json()["top"], probs, k=3, labels=SENTIMENT)  # unpadded alone == padded in a batch
    assert client.get("/metrics").json()["max_batch_seen"] > 1
    plain = client.post("/predict", content=b"the movie was good", headers={"content-type": "text/plain"})
    assert [t["index"] for t in plain.json()["top"]] == [t["index"] for t in responses[0].json()["top"]]
    np.testing.assert_allclose([t["prob"] for t in plain.json()["top"]],
                               [t["prob"] for t in responses[0].json()["top"]], atol=1e-6)


@pytest.mark.parametrize("kwargs,status,word", [
    (dict(json={"tokens": ["a"]}), 422, '"text" field'),
    (dict(json={"text": " ".join(["good"] * 20)}), 413, "22 tokens, over the model's 16"),
    (dict(json={"text": None}), 422, "must be a string"),
    (dict(content=PNG, headers={"content-type": "image/png"}), 415, "text/plain"),
])
def test_bad_bert_requests_get_4xx(bert, kwargs, status, word):
    r = bert[2].post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert word in r.json()["error"]
    assert bert[2].post("/predict", json={"text": "good"}).status_code == 200


@pytest.mark.slow  # the ONNX export of BERT
def test_bert_on_onnx_runtime_answers_as_torch(bert, workdir):
    """BERT exported by `zoo export`, served from --onnx with --pretrained for its tokenizer."""
    from zoo.deploy.export import export

    model, tokenizer, torch_client = bert
    path = export(str(workdir / "bert"), "onnx", workdir / "bert.onnx")
    app = create_app(load_servable(str(workdir / "bert"), onnx=str(path), threads=1), max_batch=8, max_wait_ms=20)
    texts = ["the movie was good", "not a very great plot but the acting is awful", "bad", "awful film"]
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/info").json()["backend"] == "onnxruntime"
        responses, _ = _concurrent(client, len(texts) * 2, 4, lambda c, i: c.post(
            "/predict", json={"text": texts[i % len(texts)]}))
        for i, r in enumerate(responses):
            expected = torch_client.post("/predict", json={"text": texts[i % len(texts)]}).json()["top"]
            assert [t["index"] for t in r.json()["top"]] == [t["index"] for t in expected]
            np.testing.assert_allclose([t["prob"] for t in r.json()["top"]], [t["prob"] for t in expected],
                                       atol=1e-5)
        assert "500" not in client.get("/metrics").json()["responses"]


def _random_graph(seed: int, in_channels: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    n = 3 + seed % 5
    edges = rng.integers(0, n, (2, 2 * n)).tolist()
    return {"x": rng.standard_normal((n, in_channels)).round(3).tolist(), "edge_index": edges}


def _graph_direct(model, graph: dict) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(graph["x"], dtype=torch.float32), torch.tensor(graph["edge_index"])).softmax(-1)


def test_graphs_of_any_size_batch_as_one_disjoint_union(graph):
    model, client = graph
    graphs = [_random_graph(i) for i in range(16)]
    responses, _ = _concurrent(client, 16, 8, lambda c, i: c.post("/predict", json=graphs[i]))
    for g, r in zip(graphs, responses):
        assert r.status_code == 200, r.text
        assert len(r.json()["nodes"]) == len(g["x"])
        for node, p in zip(r.json()["nodes"], _graph_direct(model, g).numpy()):
            _check_top(node["top"], p, k=2, labels=None)
    assert client.get("/metrics").json()["max_batch_seen"] > 1


def test_graph_classifier_answers_one_top_list_per_graph(workdir):
    torch.manual_seed(0)
    model = zoo.create("gin", in_channels=4, hidden_channels=8, num_classes=3, num_layers=2).eval()
    zoo.save_pretrained(model, workdir / "gin")
    graphs = [_random_graph(i) for i in range(12)]
    with serve_in_thread(create_app(load_servable(str(workdir / "gin")), max_wait_ms=20)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            responses, _ = _concurrent(client, 12, 6, lambda c, i: c.post("/predict", json=graphs[i]))
            assert client.get("/metrics").json()["max_batch_seen"] > 1  # pooled per graph by the batch vector
    for g, r in zip(graphs, responses):
        assert r.status_code == 200, r.text
        _check_top(r.json()["top"], _graph_direct(model, g)[0].numpy(), k=3, labels=None)


def test_a_bug_in_the_model_call_is_a_500_with_a_message_and_the_server_goes_on(image_model):
    servable = load_servable(str(image_model[1]))
    run = servable.run

    def buggy(inputs, topks):  # a bug that only some inputs reach
        if any(float(x.mean()) > 0.9 for x in inputs):
            raise RuntimeError("index out of range in the test's bug")
        return run(inputs, topks)

    servable.run = buggy
    white = io.BytesIO()
    Image.new("L", (SIZE, SIZE), 255).save(white, format="PNG")
    with serve_in_thread(create_app(servable, max_batch=1)) as url, httpx.Client(base_url=url) as client:
        r = client.post("/predict", content=white.getvalue(), headers={"content-type": "image/png"})
        assert r.status_code == 500
        assert "internal error (RuntimeError: index out of range in the test's bug)" in r.json()["error"]
        assert client.post("/predict", content=PNG, headers={"content-type": "image/png"}).status_code == 200
        assert client.get("/metrics").json()["responses"] == {"500": 1, "200": 1}


@pytest.fixture(scope="module")
def gpt(workdir):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from zoo.nlp.gpt2 import TEST_SPEC

    vocab = {w: i for i, w in enumerate(["<unk>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    torch.manual_seed(0)
    model = zoo.create("gpt2", **{**TEST_SPEC.config, "vocab_size": len(vocab)}).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(50)  # spread the next-token probabilities of the 0.02-std init
    directory = workdir / "gpt"
    zoo.save_pretrained(model, directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    app = create_app(load_servable(str(directory), topk=3), max_batch=8, max_wait_ms=20)
    with served(app) as client:
        yield model, tokenizer, client


def test_gpt2_next_tokens_equal_direct_forward_alone_or_batched(gpt):
    model, tokenizer, client = gpt
    texts = ["the movie was", "a very good plot and the acting", "not", "the film is very bad but"] * 3
    responses, _ = _concurrent(client, len(texts), 6, lambda c, i: c.post("/predict", json={"text": texts[i]}))
    for text, r in zip(texts, responses):
        assert r.status_code == 200, r.text
        with torch.no_grad():
            probs = model(torch.tensor([tokenizer.encode(text).ids]))[0, -1].softmax(-1).numpy()
        order = np.argsort(-probs)[:3]
        nxt = r.json()["next"]
        assert [t["id"] for t in nxt] == order.tolist()
        assert [t["token"] for t in nxt] == [tokenizer.id_to_token(int(i)) for i in order]
        np.testing.assert_allclose([t["prob"] for t in nxt], probs[order], rtol=1e-5)  # right pads unseen
    assert client.get("/metrics").json()["max_batch_seen"] > 1
    r = client.post("/predict", json={"text": ""})
    assert r.status_code == 422 and "no tokens" in r.json()["error"]
    r = client.post("/predict", json={"text": "good " * 17})
    assert r.status_code == 413 and "over the model's 16" in r.json()["error"]
    assert "500" not in client.get("/metrics").json()["responses"]


def test_a_lone_request_does_not_wait_out_max_wait(image_model):
    """The batcher waits for requests being read or parsed, not for ones that have not come."""
    app = create_app(load_servable(str(image_model[1])), max_batch=8, max_wait_ms=10_000)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(2):
            start = time.perf_counter()
            assert client.post("/predict", content=PNG, headers={"content-type": "image/png"}).status_code == 200
            assert time.perf_counter() - start < 5
