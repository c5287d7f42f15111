"""``zoo quantize``: an int8 copy of a saved model that ``zoo.from_pretrained`` loads back.

    zoo quantize --pretrained runs/bert --out runs/bert-int8                       # dynamic (default)
    zoo quantize --pretrained runs/digits --out runs/digits-int8 --mode static --calibration-data digits

Dynamic (``torch.ao.quantization.quantize_dynamic``): the weights of every ``nn.Linear`` / ``nn.LSTM``
(and GPT-2's transposed ``Conv1D``) become int8, activations are quantized per batch on the fly. It
suits the models whose time goes into matrix products with weights: BERT, GPT-2, the BiLSTM-CRF
tagger. It is chosen over ONNX Runtime's quantizer because the result stays a torch module that
``zoo.from_pretrained`` returns and every recipe can evaluate.

Static (FX graph mode, ``prepare_fx`` / ``convert_fx`` with the x86 qconfig): for the ResNet family,
whose time goes into convolutions. Each residual stage (``layer1`` .. ``layer4``) is traced, its
conv-bn-relu fused, observed on calibration images and converted to int8 kernels; the stem conv and
the classifier stay float (their inputs / outputs carry the most information per value), and the
model's own input checks (not traceable by FX) stay in its float ``forward``.

The folder: ``config.json`` as ``save_pretrained`` writes it plus ``"quantization": {"mode": ...,
"dtype": "qint8", ...}``, and ``model.safetensors``. A quantized state dict holds packed parameters
(torchbind objects for the LSTM, tuples, dtypes) that neither safetensors nor a ``weights_only``
load accept; it is stored as plain tensors instead: each quantized tensor as its int8 values
(``KEY.__q_int``) with its scale and zero point (``KEY.__q_scale``, ``KEY.__q_zero_point``), an LSTM's
packed cells through its own ``get_weight`` / ``set_weight_bias``, and the structure (tuples, dtypes,
quantization schemes) as JSON in the file's metadata. Loading rebuilds the float model from the
config, quantizes it with the same recipe (which gives the same module structure) and puts the
stored int8 values back: the outputs equal the quantized model's before saving, bit for bit.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from zoo.shared.atomic import atomic_open, check_writable
from zoo.shared.errors import CheckpointError, DatasetError, InvalidConfigError, PretrainedNotFoundError

MODES = ("dynamic", "static")
QUANT_FILENAME = "model.safetensors"
_META_KEY = "zoo_quantized"
# families whose residual stages static quantization converts (their builder is vision.resnet.ResNet)
STATIC_FAMILIES = ("ResNet",)


@contextlib.contextmanager
def _ao():
    """torch.ao.quantization warns on import that it moves to torchao (not installed here); its
    eager dynamic and FX APIs are the ones this torch ships and they work."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*(TypedStorage|must run observer|_aminmax|quantization).*")
        yield


# ------------------------------------------------------------------------------------------------
# The recipes
# ------------------------------------------------------------------------------------------------


def _conv1d_class():
    try:
        from zoo.nlp.gpt2 import Conv1D
    except ImportError:  # pragma: no cover - the nlp domain is part of the zoo
        return None
    return Conv1D


class _DynamicConv1D:
    """GPT-2's ``Conv1D`` (``x @ W + b``, ``W`` stored ``[in, out]``) as a dynamic int8 Linear over ``W.T``."""

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        linear = nn.Linear(mod.weight.shape[0], mod.weight.shape[1], bias=mod.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(mod.weight.t())
            if mod.bias is not None:
                linear.bias.copy_(mod.bias)
        linear.qconfig = mod.qconfig
        return DynamicLinear.from_float(linear)


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """Int8 weights for every Linear / LSTM / GPT-2 Conv1D, activations quantized per call (a copy)."""
    import copy

    from torch.ao.nn.quantized.dynamic import LSTM as DynamicLSTM
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig
    from torch.ao.quantization import quantize_dynamic as ao_quantize_dynamic

    model = copy.deepcopy(model).eval()
    mapping: dict[type, type] = {nn.Linear: DynamicLinear, nn.LSTM: DynamicLSTM}
    conv1d = _conv1d_class()
    if conv1d is not None:
        mapping[conv1d] = _DynamicConv1D
    with _ao():
        quantized = ao_quantize_dynamic(model, {cls: default_dynamic_qconfig for cls in mapping},
                                        mapping=mapping, dtype=torch.qint8)
    return quantized


def _static_stages(model: nn.Module) -> list[str]:
    if type(model).__name__ not in STATIC_FAMILIES:
        raise InvalidConfigError(
            f"static int8 is implemented for the ResNet family (its residual stages go through FX graph mode); "
            f"{getattr(model, 'zoo_name', type(model).__name__)} is not one: use --mode dynamic")
    return ["layer1", "layer2", "layer3", "layer4"]


def quantize_static(model: nn.Module, calibration: Iterable[torch.Tensor] | None,
                    example: torch.Tensor | None = None) -> nn.Module:
    """Static int8 residual stages (FX: fuse, observe on ``calibration`` batches, convert), a copy.
    ``calibration=None`` converts without observing (only to rebuild the structure before loading
    saved int8 values)."""
    import copy

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = copy.deepcopy(model).eval()
    stages = _static_stages(model)
    batches = list(calibration) if calibration is not None else []
    if example is None:
        example = batches[0][:1] if batches else torch.randn(1, model.in_chans, 32, 32)
    # the input each stage sees: run the float model once on the example (the forward iterates a
    # stage's blocks, so its first block sees the stage's input)
    inputs = {}
    hooks = [getattr(model, s)[0].register_forward_pre_hook(lambda m, a, s=s: inputs.setdefault(s, a[0][:1].clone()))
             for s in stages]
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    with _ao(), torch.no_grad():
        qconfig = get_default_qconfig_mapping("x86")
        prepared = {s: prepare_fx(getattr(model, s), qconfig, (inputs[s],)) for s in stages}
        for s in stages:  # a one-block Sequential: the forward iterates a stage's blocks
            setattr(model, s, nn.Sequential(prepared[s]))
        for batch in batches:
            model(batch)
        for s in stages:
            setattr(model, s, nn.Sequential(convert_fx(prepared[s])))
    return model


# ------------------------------------------------------------------------------------------------
# Saving and loading: a quantized state dict as plain tensors
# ------------------------------------------------------------------------------------------------


def _is_dynamic_lstm(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import LSTM as DynamicLSTM

    return isinstance(module, DynamicLSTM)


def _encode(key: str, value: Any, tensors: dict, layout: dict) -> None:
    """One state-dict entry as plain tensors in ``tensors`` and its structure in ``layout``."""
    if isinstance(value, torch.Tensor) and value.is_quantized:
        scheme = value.qscheme()
        if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            scale, zero = torch.tensor(value.q_scale(), dtype=torch.float64), torch.tensor(value.q_zero_point())
            axis = None
        else:
            scale, zero, axis = value.q_per_channel_scales(), value.q_per_channel_zero_points(), value.q_per_channel_axis()
        tensors[f"{key}.__q_int"] = value.int_repr().contiguous()
        tensors[f"{key}.__q_scale"] = scale.contiguous()
        tensors[f"{key}.__q_zero_point"] = zero.contiguous()
        layout[key] = {"kind": "qtensor", "dtype": str(value.dtype), "qscheme": str(scheme), "axis": axis}
    elif isinstance(value, torch.Tensor):
        tensors[key] = value.detach().contiguous().clone()
        layout[key] = {"kind": "tensor"}
    elif isinstance(value, (tuple, list)):
        layout[key] = {"kind": "tuple", "length": len(value)}
        for i, item in enumerate(value):
            _encode(f"{key}.__{i}", item, tensors, layout)
    elif isinstance(value, torch.dtype):
        layout[key] = {"kind": "dtype", "value": str(value)}
    elif value is None:
        layout[key] = {"kind": "none"}
    else:
        raise TypeError(f"cannot store state-dict entry {key!r} of type {type(value).__name__}")


_DTYPES = {str(d): d for d in (torch.qint8, torch.quint8, torch.qint32, torch.float16, torch.float32)}
_SCHEMES = {str(s): s for s in (torch.per_tensor_affine, torch.per_tensor_symmetric, torch.per_channel_affine,
                                torch.per_channel_symmetric)}


def _decode(key: str, tensors: dict, layout: dict) -> Any:
    entry = layout[key]
    kind = entry["kind"]
    if kind == "tensor":
        return tensors[key]
    if kind == "qtensor":
        values, scale, zero = (tensors[f"{key}.__q_{p}"] for p in ("int", "scale", "zero_point"))
        if entry["axis"] is None:
            return torch._make_per_tensor_quantized_tensor(values, float(scale), int(zero))
        return torch._make_per_channel_quantized_tensor(values, scale, zero, entry["axis"])
    if kind == "tuple":
        return tuple(_decode(f"{key}.__{i}", tensors, layout) for i in range(entry["length"]))
    if kind == "dtype":
        return _DTYPES[entry["value"]]
    if kind == "none":
        return None
    raise CheckpointError(f"unknown entry kind {kind!r} for {key!r} in a quantized model file")


def _lstm_cells(model: nn.Module) -> tuple[set[str], Any]:
    """The dynamic LSTMs' names and a test for their packed-cell state-dict keys."""
    lstms = {name for name, m in model.named_modules() if _is_dynamic_lstm(m)}
    prefixes = tuple(f"{p}._all_weight_values." if p else "_all_weight_values." for p in lstms)
    return lstms, (lambda key: key.startswith(prefixes)) if prefixes else (lambda key: False)


def quantized_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """The model's quantized state as ``({name: plain tensor}, layout)``; ``layout["entries"]`` says
    how each state-dict entry is stored, ``layout["lstm"]`` which LSTM weights are stored per LSTM."""
    tensors: dict[str, torch.Tensor] = {}
    entries: dict[str, dict] = {}
    top: list[str] = []
    lstms, is_cell = _lstm_cells(model)
    for key, value in model.state_dict().items():
        if not is_cell(key):  # packed cells: stored below through the LSTM's own accessors
            _encode(key, value, tensors, entries)
            top.append(key)
    cells: dict[str, list[str]] = {}
    for prefix in sorted(lstms):
        lstm = model.get_submodule(prefix)
        cells[prefix] = []
        for group in (lstm.get_weight(), lstm.get_bias()):
            for name, value in group.items():
                _encode(f"{prefix}.__lstm.{name}", value, tensors, entries)
                cells[prefix].append(name)
    seen = set()  # tied weights share storage; safetensors refuses that
    for key, value in tensors.items():
        ptr = (value.untyped_storage().data_ptr(), value.storage_offset()) if value.numel() else None
        if ptr in seen:
            tensors[key] = value.clone()
        seen.add(ptr)
    return tensors, {"entries": entries, "state": top, "lstm": cells}


def load_quantized_state(model: nn.Module, tensors: dict[str, torch.Tensor], layout: dict) -> None:
    """Put a state written by :func:`quantized_state` into a model quantized with the same recipe; strict."""
    from zoo.shared.errors import CheckpointMismatchError

    entries = layout["entries"]
    lstms, is_cell = _lstm_cells(model)
    if set(layout["lstm"]) != lstms:
        raise CheckpointMismatchError(f"the quantized file has LSTM cells for {sorted(layout['lstm'])}, the model "
                                      f"rebuilt from its config has {sorted(lstms)}")
    for prefix, names in layout["lstm"].items():
        model.get_submodule(prefix).set_weight_bias(
            {name: _decode(f"{prefix}.__lstm.{name}", tensors, entries) for name in names})
    state = {key: _decode(key, tensors, entries) for key in layout["state"]}
    own = model.state_dict()
    expected = {k for k in own if not is_cell(k)}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointMismatchError(f"the quantized weights do not fit the model rebuilt from its config: "
                                      f"missing {missing[:8]}, unexpected {unexpected[:8]}", missing, unexpected)
    full = collections.OrderedDict({**state, **{k: v for k, v in own.items() if is_cell(k)}})
    full._metadata = own._metadata  # the modules' state-dict versions: quantized Linear reads its by them
    with _ao():
        model.load_state_dict(full, strict=True)


def save_quantized(model: nn.Module, directory: str | os.PathLike, recipe: dict) -> Path:
    """``config.json`` (the float model's, plus ``"quantization": recipe``) + ``model.safetensors``."""
    from safetensors.torch import save as safetensors_bytes

    directory = check_writable(directory)
    tensors, layout = quantized_state(model)
    config = {"architecture": model.zoo_name, "config": model.zoo_config, "format": "zoo", "version": 1}
    for key in ("id2label", "pretrained_cfg"):
        if getattr(model, key, None):
            config[key] = getattr(model, key)
    config["quantization"] = recipe
    with atomic_open(directory / QUANT_FILENAME) as fh:
        fh.write(safetensors_bytes(tensors, metadata={"format": "pt", _META_KEY: json.dumps(layout)}))
    with atomic_open(directory / "config.json") as fh:
        fh.write((json.dumps(config, indent=2) + "\n").encode())
    return directory


def is_quantized_dir(directory: str | os.PathLike) -> bool:
    from zoo.shared.errors import ZooError
    from zoo.shared.weights import read_zoo_config

    if not Path(directory).is_dir():
        return False
    try:
        config = read_zoo_config(Path(directory))  # bounded in size and depth
    except ZooError:
        return False  # the regular loader names what is wrong with the file
    return isinstance((config or {}).get("quantization"), dict)


def _rebuild(model: nn.Module, recipe: dict, example: torch.Tensor | None = None) -> nn.Module:
    mode = recipe.get("mode")
    if mode == "dynamic":
        return quantize_dynamic(model)
    if mode == "static":
        shape = recipe.get("example_shape")
        return quantize_static(model, None, torch.zeros(shape) if shape else example)
    raise CheckpointError(f"unknown quantization mode {mode!r} in config.json (this zoo writes {', '.join(MODES)})")


def load_quantized(directory: str | os.PathLike) -> nn.Module:
    """A folder written by :func:`save_quantized` (what ``zoo.from_pretrained`` calls for it)."""
    from safetensors import safe_open

    from zoo.shared.factory import create
    from zoo.shared.weights import read_zoo_config

    directory = Path(directory)
    config = read_zoo_config(directory)
    if config is None or not isinstance(config.get("quantization"), dict):
        raise CheckpointError(f"{directory} is not a quantized zoo model (no 'quantization' in its config.json)")
    weights = directory / QUANT_FILENAME
    if not weights.is_file():
        raise PretrainedNotFoundError(f"{weights} is missing; the folder was not written by zoo quantize")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            layout = json.loads((fh.metadata() or {}).get(_META_KEY, "null"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise CheckpointError(f"{weights} cannot be read as safetensors ({exc})") from None
    if not isinstance(layout, dict):
        raise CheckpointError(f"{weights} has no quantized-state layout in its metadata; write it with zoo quantize")
    float_model = create(config["architecture"], **config["config"]).eval()
    model = _rebuild(float_model, config["quantization"])
    load_quantized_state(model, tensors, layout)
    model.zoo_name, model.zoo_config = config["architecture"], float_model.zoo_config
    model.quantization = config["quantization"]
    for key in ("id2label", "pretrained_cfg"):
        if isinstance(config.get(key), dict):
            setattr(model, key, config[key])
    return model.eval()


# ------------------------------------------------------------------------------------------------
# Calibration data and the command line
# ------------------------------------------------------------------------------------------------


def calibration_batches(spec: str, model: nn.Module, batches: int, batch_size: int = 32) -> list[torch.Tensor]:
    """Images to observe: ``digits`` (its training split) or an image folder, at the saved model's input size."""
    from zoo.vision import data as vdata

    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size")
    img_size = int(size[-1]) if size else 32
    kind = vdata.data_kind(spec)
    if kind == "digits":
        data = vdata.load_digits(img_size)
    elif kind == "folder":
        data = vdata.load_image_folder(spec, img_size)
    else:
        raise DatasetError(f"--calibration-data takes 'digits' or an image folder, got {spec!r}")
    loader = torch.utils.data.DataLoader(data.train, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    out = []
    for images, _ in loader:
        out.append(images)
        if len(out) == batches:
            break
    return out


def quantize(model: nn.Module, mode: str = "dynamic", calibration: Sequence[torch.Tensor] | None = None) -> nn.Module:
    """The int8 model (a copy) with ``model.quantization`` recording the recipe."""
    if mode not in MODES:
        raise InvalidConfigError(f"unknown quantization mode {mode!r}; choose {' or '.join(MODES)}")
    if mode == "dynamic":
        quantized = quantize_dynamic(model)
        recipe = {"mode": "dynamic", "dtype": "qint8", "modules": ["Linear", "LSTM", "Conv1D"],
                  "library": "torch.ao.quantization.quantize_dynamic"}
    else:
        if not calibration:
            raise InvalidConfigError("static quantization needs calibration images: --calibration-data digits|FOLDER")
        quantized = quantize_static(model, calibration)
        recipe = {"mode": "static", "dtype": "quint8 activations, qint8 weights", "backend": "x86",
                  "stages": _static_stages(model), "library": "torch.ao.quantization.quantize_fx",
                  "calibration_batches": len(calibration), "example_shape": [1, *calibration[0].shape[1:]]}
    recipe["torch_version"] = torch.__version__
    for key in ("zoo_name", "zoo_config", "id2label", "pretrained_cfg"):
        if hasattr(model, key):
            setattr(quantized, key, getattr(model, key))
    quantized.quantization = recipe
    return quantized


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo quantize", description=(
        "Write an int8 copy of a saved model that zoo.from_pretrained loads: dynamic (Linear/LSTM weights int8; "
        "BERT, GPT-2, the BiLSTM-CRF tagger) or static with calibration (ResNet family)."))
    parser.add_argument("--pretrained", required=True, metavar="DIR", help="a folder written by save_pretrained / --save-model")
    parser.add_argument("--out", required=True, metavar="DIR2", help="the folder to write")
    parser.add_argument("--mode", choices=MODES, default="dynamic", help="dynamic (default) or static")
    parser.add_argument("--calibration-data", metavar="DATA", help="static: 'digits' or an image folder")
    parser.add_argument("--calibration-batches", type=int, default=16, help="static: batches of 32 observed (default 16)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == "static" and not args.calibration_data:
        parser.error("--mode static needs --calibration-data (digits or an image folder)")
    if args.calibration_batches < 1:
        parser.error("--calibration-batches must be at least 1")
    import zoo

    directory = Path(args.pretrained).expanduser()
    if not directory.is_dir():
        raise PretrainedNotFoundError(f"--pretrained {args.pretrained}: no such directory (a folder written by "
                                      "save_pretrained / --save-model)")
    model = zoo.from_pretrained(directory).eval()
    if getattr(model, "quantization", None):
        raise InvalidConfigError(f"{directory} is already quantized; pass the float model's folder")
    check_writable(args.out)
    if args.mode == "static":
        _static_stages(model)  # a model static int8 does not cover is named before data is read
    calibration = (calibration_batches(args.calibration_data, model, args.calibration_batches)
                   if args.mode == "static" else None)
    quantized = quantize(model, args.mode, calibration)
    save_quantized(quantized, args.out, quantized.quantization)
    before = sum(p.stat().st_size for p in directory.iterdir() if p.suffix in (".safetensors", ".json"))
    after = sum(p.stat().st_size for p in Path(args.out).iterdir() if p.suffix in (".safetensors", ".json"))
    print(f"wrote {args.out} ({args.mode} int8): {after / 2**20:.1f} MiB, {before / max(after, 1):.2f}x smaller")
    return 0
