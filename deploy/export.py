"""``zoo export``: a saved or registered model as an ONNX file, a ``torch.export`` program or TorchScript.

    zoo export resnet50 --format onnx --out resnet50.onnx            # random weights, full size
    zoo export --pretrained runs/digits/model --format export --out digits.pt2

The model is traced once by ``torch.export.export`` with every input dimension declared
``Dim.AUTO``: the exporter keeps dynamic what the model allows (the batch; the sequence length of a
text model; the image size of a CNN) and fixes the rest (a ViT's image size, channels). The ONNX
file is converted from that program (the dynamo-based exporter accepts an ExportedProgram), so ONNX
and ``.pt2`` come from the same trace; TorchScript is ``torch.jit.trace``.

Beside the file, ``PATH.json`` (and, for ONNX, the model's ``metadata_props["zoo"]``) records what a
deployment needs::

    {"format": "onnx", "architecture": "resnet50", "config": {...}, "pretrained_cfg": {...} | null,
     "id2label": {...} | null,
     "inputs": [{"name": "x", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}],
     "outputs": [{"name": "logits", "shape": ["batch", 1000], "dtype": "float32"}],
     "dynamic_axes": {"x": {"0": "batch", "2": "height", "3": "width"}},
     "zoo_version": "0.1.0", "torch_version": "2.11.0"}

Input names are the parameter names of the model's ``forward``. :func:`load` reads any of the three
back as one callable (ONNX Runtime for ONNX). A model that cannot be exported to a format raises
:class:`ExportError` naming the operation; :data:`UNSUPPORTED` lists the registered ones.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import linecache
import logging
import os
import re
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from zoo.shared.atomic import atomic_open, check_writable
from zoo.shared.errors import InputError, ZooError

FORMATS = {"onnx": ".onnx", "export": ".pt2", "torchscript": ".pt"}
FORMAT_NAMES = {"onnx": "ONNX", "export": "torch.export", "torchscript": "TorchScript"}
ONNX_EXTERNAL_DATA_BYTES = 2 * 1024**3  # protobuf's limit: larger models keep their weights beside the file

_GRAPH_CHECKS = "graph/message_passing.py (edge_index / batch bounds: int(edge_index.max()))"
_TAGGER_CHECKS = "nlp/bilstm_crf.py _check_inputs (id bounds: int(words.max()))"
# (model, format) -> why it does not export. The registry-wide test (tests/deploy/test_export_registry.py)
# holds this table to reality: a pair listed here must raise ExportError with this reason (the files and
# the kind of failure it names), a pair not listed must export and match eager within 1e-4 at other
# batch sizes and lengths.
UNSUPPORTED: dict[tuple[str, str], str] = {
    **{(name, fmt): f"data-dependent Python control flow: the input check in {_GRAPH_CHECKS} reads a "
                    "tensor's value, which torch.export cannot trace"
       for name in ("gat", "gatv2", "gcn", "gin", "graphsage") for fmt in ("export", "onnx")},
    **{(name, fmt): f"data-dependent Python control flow: the input check in {_TAGGER_CHECKS} reads a "
                    "tensor's value, which torch.export cannot trace"
       for name in ("bilstm_crf", "bilstm_cnn_crf") for fmt in ("export", "onnx")},
    **{(name, "torchscript"): "the sparse aggregation in graph/fast.py is a custom torch.autograd.Function "
                              "(_CSRAggregate), which torch.jit.trace cannot record"
       for name in ("gat", "gatv2", "gin", "graphsage")},
    ("gcn", "torchscript"): "the trace keeps the example graph's normalised adjacency (graph/fast.py) as a "
                            "constant: the traced file fails at another batch size",
    **{(name, "torchscript"): "the forward returns (logits, None) without lengths; torch.jit.trace "
                              "records tensors only"
       for name in ("wav2vec2_base", "wav2vec2_large", "wav2vec2_large_lv60k")},
}


class ExportError(ZooError):
    """A model that cannot be exported to a format; the message names the unsupported operation."""

    def __init__(self, message: str, model: str = "", format: str = "", reason: str = ""):
        super().__init__(message)
        self.model, self.format, self.reason = model, format, reason


# ------------------------------------------------------------------------------------------------
# What the exported file takes and gives
# ------------------------------------------------------------------------------------------------


def input_names(model: torch.nn.Module, count: int) -> list[str]:
    """The names of the first ``count`` parameters of ``model.forward``: the exported inputs' names."""
    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if count > len(params):
        raise InputError(f"{count} example inputs given, but {type(model).__name__}.forward takes {len(params)}")
    return [p.name for p in params[:count]]


def _flat_outputs(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output in order (a tuple's ``None`` entries dropped: no format keeps them)."""
    leaves = torch.utils._pytree.tree_leaves(out)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _output_names(task: str, count: int) -> list[str]:
    if count == 1:
        return ["logits" if any(w in task for w in ("classification", "language-modelling", "ctc",
                                                     "text-encoding", "sequence-to-sequence")) else "output"]
    return [f"output_{i}" for i in range(count)]


def _axis_name(domain: str, input_name: str, rank: int, axis: int) -> str:
    if domain == "graph":
        return "num_edges" if input_name == "edge_index" else "num_nodes"
    if axis == 0:
        return "batch"
    if rank == 4 and axis >= 2:
        return ("height", "width")[axis - 2]
    if axis == 1 and rank in (2, 3):
        return "length"  # tokens, samples of a waveform, words of a sentence
    return f"{input_name}_dim{axis}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _program_inputs(program) -> list[torch.fx.Node]:
    user = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    return [nodes[name] for name in user]


def _symbol_names(program, names: list[str], domain: str) -> dict[str, str]:
    """The exporter's symbols (``s77``) -> readable axis names (``batch``), unique; inputs that share a
    symbol (input_ids and attention_mask share the batch and the length) share the name."""
    mapping: dict[str, str] = {}
    for name, node in zip(names, _program_inputs(program)):
        shape = node.meta["val"].shape
        for axis, size in enumerate(shape):
            symbol = str(size)
            if isinstance(size, int) or symbol in mapping or not symbol.isidentifier():
                continue
            readable = _axis_name(domain, name, len(shape), axis)
            if readable in mapping.values():
                readable = f"{name}_{readable}"
            mapping[symbol] = readable
    return mapping


def _shape(shape, mapping: dict[str, str]) -> list:
    """A shape as JSON: ints where fixed, names where dynamic (``"2*batch"`` where derived)."""
    out = []
    for size in shape:
        if isinstance(size, int) or str(size).isdigit():
            out.append(int(size))
        else:
            out.append(re.sub(r"\b[su]\d+\b", lambda m: mapping.get(m.group(0), m.group(0)), str(size)))
    return out


def _io_spec(model, names, inputs, outputs, task, domain, program=None) -> dict[str, Any]:
    """``inputs`` / ``outputs`` / ``dynamic_axes`` of the sidecar. Dynamic axes are the program's
    symbolic dims; without a program (TorchScript of a model torch.export cannot trace) dim 0."""
    out_names = _output_names(task, len(outputs))
    if program is not None:
        mapping = _symbol_names(program, names, domain)
        in_shapes = [_shape(n.meta["val"].shape, mapping) for n in _program_inputs(program)]
        output = next(n for n in program.graph.nodes if n.op == "output")
        out_vals = [n.meta.get("val") for n in torch.utils._pytree.tree_leaves(output.args)
                    if isinstance(n, torch.fx.Node)]
        out_vals = [v for v in out_vals if isinstance(v, torch.Tensor)]
        out_shapes = [_shape(v.shape, mapping) for v in out_vals]
    else:
        first = _axis_name(domain, names[0], inputs[0].dim(), 0)
        in_shapes = [[first, *t.shape[1:]] if t.dim() else [] for t in inputs]
        out_shapes = [[first, *t.shape[1:]] if t.dim() and t.shape[0] == inputs[0].shape[0] else list(t.shape)
                      for t in outputs]
    dynamic = {}
    for name, shape in zip(names, in_shapes):
        axes = {str(i): s for i, s in enumerate(shape) if isinstance(s, str)}
        if axes:
            dynamic[name] = axes
    return {
        "inputs": [{"name": n, "shape": s, "dtype": _dtype_name(t.dtype)} for n, s, t in zip(names, in_shapes, inputs)],
        "outputs": [{"name": n, "shape": s, "dtype": _dtype_name(t.dtype)}
                    for n, s, t in zip(out_names, out_shapes, outputs)],
        "dynamic_axes": dynamic,
    }


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the metadata of an exported file lives: ``model.onnx`` -> ``model.onnx.json``."""
    return Path(f"{path}.json")


# ------------------------------------------------------------------------------------------------
# Why an export failed: the operation, not the exporter's traceback
# ------------------------------------------------------------------------------------------------


def _user_frame(exc: BaseException) -> str | None:
    """``file:line: code`` of the innermost frame in the zoo's model code under the failure (the line
    whose Python the exporter could not trace)."""
    root = Path(__file__).resolve().parents[1]
    found = None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            path = Path(frame.filename).resolve()
            if root in path.parents and "deploy" not in path.parts and ".venv" not in path.parts:
                code = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
                found = f"{path.relative_to(root)}:{frame.lineno}: `{code}`"
        exc = exc.__cause__ or exc.__context__
    return found


def explain(exc: BaseException) -> str:
    """One line saying which operation stopped an exporter."""
    if isinstance(exc, TraceShapeError):
        return str(exc)
    text = f"{exc}"
    where = _user_frame(exc)
    if "DataDependent" in type(exc).__name__ or "data-dependent" in text:
        return ("data-dependent Python control flow (a branch or int() on a tensor's value"
                + (f", at {where}" if where else "") + "), which torch.export cannot trace")
    chain, seen, cause = [], set(), exc
    while cause is not None and id(cause) not in seen:  # the op is named somewhere down the chain
        seen.add(id(cause))
        chain.append(f"{cause}")
        cause = cause.__cause__ or cause.__context__
    op = re.search(r"\b(?:aten|prims|quantized)(?:::|\.)[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?", "\n".join(chain))
    if op:
        return f"unsupported operation {op.group(0).replace('::', '.')}" + (f" (at {where})" if where else "")
    if where and ".apply(" in where:
        return (f"a custom torch.autograd.Function (at {where}), which torch.jit.trace cannot record "
                f"({type(exc).__name__}: {text.strip().splitlines()[-1][:120] if text.strip() else ''})")
    if "TorchScript interpreter" in text:  # the interpreter's message holds the real error and its line
        errors = re.findall(r"^\s*(?:\w+Error: )*(\w+Error: .+)$", text, flags=re.M)
        root = str(Path(__file__).resolve().parents[1]) + os.sep
        at = [line.strip().replace(root, "") for line in text.split("At:", 1)[-1].splitlines()
              if line.strip().startswith(root) and ".venv" not in line]
        return (f"the TorchScript interpreter failed: {errors[-1][:200] if errors else 'see the cause'}"
                + (f" (at {at[0]})" if at else ""))
    if "can be output from traced functions" in text:
        return "the forward returns a non-tensor (None) among its outputs, which torch.jit.trace cannot record"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # the exporters colour their messages
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:300]}" + (f" (at {where})" if where else "")


# ------------------------------------------------------------------------------------------------
# Exporting
# ------------------------------------------------------------------------------------------------


def _resolve(model_or_name) -> torch.nn.Module:
    if isinstance(model_or_name, torch.nn.Module):
        return model_or_name
    import zoo

    spec = str(model_or_name)
    if Path(spec).expanduser().is_dir() or spec.startswith("hf-hub:"):
        return zoo.from_pretrained(spec)
    name, _, tag = spec.partition(".")
    return zoo.create(spec, pretrained=bool(tag))


def example_inputs_for(model: torch.nn.Module, batch: int = 2) -> tuple:
    """Inputs the exporter can trace with: the registry TestSpec's for the model's config, at the
    saved input size (``pretrained_cfg["input_size"]``) for an image model."""
    from zoo.shared.registry import get_entry

    name = getattr(model, "zoo_name", None)
    entry = get_entry(name) if name else None
    if entry is None or entry.test is None:
        raise InputError(f"{type(model).__name__} is not a registered zoo model; pass example_inputs=(tensors, ...)")
    torch.manual_seed(0)
    try:
        inputs = tuple(entry.test.inputs(model.zoo_config, batch))
    except Exception as exc:  # a config the test inputs cannot read (an RL policy built from spaces)
        raise InputError(f"cannot make example inputs for {name} with this config ({type(exc).__name__}: {exc}); "
                         "export a saved model (--pretrained DIR) or pass example_inputs=") from exc
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    if size and len(inputs) == 1 and inputs[0].dim() == 4 and len(size) == 3:
        inputs = (torch.randn(batch, *size),)
    return inputs


@contextlib.contextmanager
def _quiet():
    """The exporters narrate (progress on stdout, warnings, a graph dump logged on failure): the
    result or the ExportError says what matters."""
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_logger.setLevel(level)


def _trace_program(model, inputs, dynamic: bool, static_axes: set[tuple[int, int]] = frozenset()):
    dims = None
    if dynamic:  # Dim.AUTO: dynamic unless the model fixes it; STATIC where a looser trace did not hold
        dims = tuple({axis: torch.export.Dim.STATIC if (i, axis) in static_axes else torch.export.Dim.AUTO
                      for axis in range(t.dim())} for i, t in enumerate(inputs))
    with _quiet():
        return torch.export.export(model, inputs, dynamic_shapes=dims, strict=False)


_SIZE_AXES = re.compile(r"length|height|width")


def shrink(inputs: Sequence[torch.Tensor], shapes: Sequence[Sequence]) -> tuple[torch.Tensor, ...]:
    """The inputs cut by a quarter along every axis whose declared size is a length, height or width
    (``shapes`` as in the sidecar): inputs of another size to check a dynamic axis with."""
    cut = []
    for t, shape in zip(inputs, shapes):
        for axis, size in enumerate(shape):
            if isinstance(size, str) and _SIZE_AXES.search(size) and t.shape[axis] > 3:
                t = t.narrow(axis, 0, t.shape[axis] - t.shape[axis] // 4)
        cut.append(t)
    return tuple(cut)


def _sound_program(model, program, inputs, names, domain):
    """The program, re-traced with fixed lengths / image sizes when the first trace's guards reject
    another size that eager accepts (a model that pools a waveform into a fixed frame count: the
    exporter keeps the length symbolic but guards it to the example's)."""
    mapping = _symbol_names(program, names, domain)
    shapes = [_shape(n.meta["val"].shape, mapping) for n in _program_inputs(program)]
    other = shrink(inputs, shapes)
    if all(a.shape == b.shape for a, b in zip(other, inputs)):
        return program
    try:
        with torch.no_grad():
            model(*other)
    except Exception:  # the model itself takes no other size there: nothing to fix
        return program
    try:
        with torch.no_grad(), _quiet():
            program.module()(*other)
        return program
    except Exception:
        static = {(i, axis) for i, shape in enumerate(shapes) for axis, size in enumerate(shape)
                  if isinstance(size, str) and _SIZE_AXES.search(size)}
        return _trace_program(model, inputs, True, static)


def _check_trace(model, traced, inputs) -> None:
    """A trace records Python ints as constants: a size or a value read at trace time silently fixes
    the file to the example. Run it at another batch size against eager, and refuse it if it differs."""
    try:
        other = example_inputs_for(model, inputs[0].shape[0] + 1)
    except InputError:  # not a registered model: no way to make other inputs
        return
    with torch.no_grad():
        expected = _flat_outputs(model(*other))
        try:
            got = _flat_outputs(traced(*other))
        except Exception as exc:
            raise TraceShapeError(f"the traced file fails at another batch size ({explain(exc)})") from exc
    for e, g in zip(expected, got):
        if e.shape != g.shape or not torch.allclose(e, g, atol=1e-4, rtol=1e-4):
            raise TraceShapeError(
                "torch.jit.trace recorded a value read at trace time as a constant (a Python int from a "
                f"tensor's size or contents): at another batch size its output {'has shape ' + str(tuple(g.shape)) if e.shape != g.shape else 'differs from eager'}"
                f" (expected {tuple(e.shape)})")


class TraceShapeError(RuntimeError):
    """A TorchScript trace that does not generalise beyond the example inputs."""


def _onnx_bytes(program, names, out_names, mapping, metadata: str, path: Path) -> None:
    """Convert the program to ONNX, name its inputs / outputs / dynamic axes, write it with the metadata."""
    with _quiet():
        onnx_program = torch.onnx.export(program, dynamo=True, verbose=False)
    graph = onnx_program.model.graph
    for value, name in zip(list(graph.outputs), out_names):
        value.name = name
    # the exporter calls dynamic axes s77; call them what the sidecar calls them, in every value
    import onnx_ir as ir

    def rename(value):
        if value.shape is None:
            return
        dims = []
        for d in value.shape:
            text = d.value if isinstance(d, ir.SymbolicDim) else None
            if text and text.isdigit():  # a fixed size the exporter left as a symbol's text
                d = int(text)
            elif text:
                d = ir.SymbolicDim(re.sub(r"\b[su]\d+\b", lambda m: mapping.get(m.group(0), m.group(0)), text))
            dims.append(d)
        value.shape = ir.Shape(dims)

    for value in [*graph.inputs, *graph.outputs, *(o for node in graph.all_nodes() for o in node.outputs)]:
        rename(value)
    onnx_program.model.metadata_props["zoo"] = metadata
    size = sum(p.numel() * p.element_size() for p in program.state_dict.values())
    if size > ONNX_EXTERNAL_DATA_BYTES:
        onnx_program.save(str(path), external_data=True)  # path + path.data: protobuf cannot hold it
        return
    proto = ir.serde.serialize_model(onnx_program.model)
    with atomic_open(path) as fh:
        fh.write(proto.SerializeToString())


def _write_sidecar(path: Path, meta: dict) -> None:
    with atomic_open(sidecar_path(path)) as fh:
        fh.write((json.dumps(meta, indent=2) + "\n").encode())


def export_formats(model_or_name, outs: dict[str, str | os.PathLike], example_inputs: Sequence | None = None,
                   dynamic: bool = True) -> dict[str, Path | ExportError]:
    """Export one model to several formats, tracing it with ``torch.export`` once: ``outs`` maps a
    format to its path. Returns, per format, the written path or the :class:`ExportError` that says
    why it could not be exported (the other formats are still written)."""
    for fmt in outs:
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}", format=fmt)
    model = _resolve(model_or_name).eval()
    name = getattr(model, "zoo_name", type(model).__name__)
    inputs = tuple(example_inputs) if example_inputs is not None else example_inputs_for(model)
    names = input_names(model, len(inputs))
    for path in outs.values():
        check_writable(Path(path).expanduser().resolve().parent)  # fail before a minute of tracing
    from zoo.shared.registry import get_entry

    entry = get_entry(name) if hasattr(model, "zoo_name") else None
    task, domain = (entry.task, entry.domain) if entry else ("", "")
    program = program_error = None
    try:  # traced before any eager call: a model that caches per input (graph CSR) is traced fresh
        program = _trace_program(model, inputs, dynamic)
        if dynamic:
            program = _sound_program(model, program, inputs, names, domain)
    except Exception as exc:  # the exporter's errors have no common base: keep the reason, not the type
        program_error = exc
    with torch.no_grad():  # not inference_mode: tensors a model caches here may meet torch.jit.trace's autograd
        outputs = _flat_outputs(model(*inputs))
    spec = _io_spec(model, names, inputs, outputs, task, domain, program)
    import zoo

    base = {"architecture": name, "config": getattr(model, "zoo_config", None),
            "pretrained_cfg": getattr(model, "pretrained_cfg", None) or None,
            "id2label": getattr(model, "id2label", None) or None, **spec,
            "zoo_version": zoo.__version__, "torch_version": torch.__version__}

    results: dict[str, Path | ExportError] = {}
    for fmt, path in outs.items():
        path = Path(path).expanduser()
        meta = {"format": fmt, **base}
        try:
            if fmt == "torchscript":
                with _quiet():  # the tracer's "converting a tensor to a Python int"
                    traced = torch.jit.trace(model, inputs, check_trace=False)
                _check_trace(model, traced, inputs)
                with atomic_open(path) as fh:
                    torch.jit.save(traced, fh)
            elif program is None:
                raise program_error
            elif fmt == "export":
                with atomic_open(path) as fh:
                    torch.export.save(program, fh)
            else:
                mapping = _symbol_names(program, names, domain)
                _onnx_bytes(program, names, [o["name"] for o in spec["outputs"]], mapping, json.dumps(meta), path)
        except ZooError as exc:
            if not isinstance(exc, InputError):
                raise  # a WriteError is the user's to fix, not the model's
            results[fmt] = ExportError(f"{name} cannot be exported to {FORMAT_NAMES[fmt]}: {exc}", name, fmt, str(exc))
            continue
        except Exception as exc:
            reason = explain(exc)
            results[fmt] = ExportError(f"{name} cannot be exported to {FORMAT_NAMES[fmt]}: {reason}", name, fmt, reason)
            results[fmt].__cause__ = exc
            continue
        _write_sidecar(path, meta)
        results[fmt] = path
    return results


def export(model_or_name, format: str, out: str | os.PathLike, example_inputs: Sequence | None = None,
           dynamic: bool = True) -> Path:
    """Export a model (a module built by the zoo, a registered name, or a save_pretrained directory)
    to ``format`` at ``out`` with its sidecar ``out.json``; raises :class:`ExportError` saying why not."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}", format=format)
    result = export_formats(model_or_name, {format: out}, example_inputs, dynamic)[format]
    if isinstance(result, ExportError):
        raise result
    return result


# ------------------------------------------------------------------------------------------------
# Loading an exported file
# ------------------------------------------------------------------------------------------------


class ExportedModel:
    """An exported file as a callable: ``model(x)`` or ``model(input_ids=..., attention_mask=...)``
    with tensors or numpy arrays; returns a torch tensor (a tuple when the model has several outputs).
    ``metadata`` is the sidecar."""

    def __init__(self, path: Path, metadata: dict, run: Callable[[list], list]):
        self.path, self.metadata, self._run = path, metadata, run
        self.input_names = [i["name"] for i in metadata["inputs"]]

    def __call__(self, *args, **kwargs):
        if len(args) > len(self.input_names):
            raise InputError(f"{self.path.name} takes {len(self.input_names)} inputs "
                             f"({', '.join(self.input_names)}), got {len(args)}")
        values = list(args)
        for name in self.input_names[len(args):]:
            if name not in kwargs:
                raise InputError(f"{self.path.name} needs the input {name!r} (inputs: {', '.join(self.input_names)})")
            values.append(kwargs.pop(name))
        if kwargs:
            raise InputError(f"{self.path.name} has no input {', '.join(map(repr, kwargs))}; "
                             f"its inputs are {', '.join(self.input_names)}")
        tensors = [torch.as_tensor(v) for v in values]
        outputs = [torch.as_tensor(o) for o in self._run(tensors)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def __repr__(self) -> str:
        return f"ExportedModel({self.metadata['architecture']!r}, format={self.metadata['format']!r}, path={str(self.path)!r})"


ONNX_PROVIDERS = ("cpu", "openvino")


def onnx_session(path: str | os.PathLike, threads: int | None = None, provider: str = "cpu"):
    """An ONNX Runtime CPU session with every graph optimization on and ``threads`` intra-op threads
    (torch's thread count by default). ``provider``: "cpu", ONNX Runtime's own kernels (MLAS), or
    "openvino", the OpenVINO execution provider on the CPU at fp32 (the ``onnxruntime-openvino``
    build, which installs in place of ``onnxruntime``)."""
    import onnxruntime as ort

    threads = threads or torch.get_num_threads()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if provider == "cpu":
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    if provider != "openvino":
        raise InputError(f"unknown ONNX Runtime provider {provider!r}; choose one of {', '.join(ONNX_PROVIDERS)}")
    if "OpenVINOExecutionProvider" not in ort.get_available_providers():
        raise ZooError(f"this onnxruntime {ort.__version__} has no OpenVINO execution provider "
                       f"(it has {', '.join(ort.get_available_providers())}); `pip install onnxruntime-openvino`, "
                       "which replaces onnxruntime, or use provider='cpu'")
    openvino = {"device_type": "CPU", "precision": "FP32", "num_of_threads": str(threads)}
    return ort.InferenceSession(str(path), options, providers=[("OpenVINOExecutionProvider", openvino)])


def load(path: str | os.PathLike) -> ExportedModel:
    """Read a file written by :func:`export` (its format from the sidecar, else the suffix)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}; write one with `zoo export ... --out {path}`")
    side = sidecar_path(path)
    if side.is_file():
        metadata = json.loads(side.read_text())
    elif path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if "zoo" not in props:
            raise ZooError(f"{path} has no zoo metadata (no {side.name}, no metadata_props['zoo']); "
                           "export it with `zoo export`")
        metadata = json.loads(props["zoo"])
    else:
        raise ZooError(f"{path} has no sidecar {side.name}; export it with `zoo export` (which writes both)")
    fmt = metadata.get("format")
    if fmt == "onnx":
        session = onnx_session(path)
        names = [i.name for i in session.get_inputs()]

        def run(tensors):
            feed = {n: t.detach().cpu().numpy() for n, t in zip(names, tensors)}
            return session.run(None, feed)
    elif fmt == "export":
        module = torch.export.load(str(path)).module()

        def run(tensors):
            with torch.inference_mode():
                return _flat_outputs(module(*tensors))
    elif fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu").eval()

        def run(tensors):
            with torch.inference_mode():
                return _flat_outputs(module(*tensors))
    else:
        raise ZooError(f"{side} names an unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return ExportedModel(path, metadata, run)


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo export", description="Export a model to ONNX, a torch.export program (.pt2) or TorchScript, "
                                       "with its metadata in OUT.json (and in the ONNX file's metadata_props).")
    parser.add_argument("name", nargs="?", help="a registered model (random weights; NAME.TAG: that tag's "
                                                "weights); or give --pretrained")
    parser.add_argument("--pretrained", metavar="DIR", help="a directory written by save_pretrained / --save-model")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="onnx, export (.pt2) or torchscript")
    parser.add_argument("--out", required=True, metavar="PATH", help="the file to write (PATH.json is written beside it)")
    parser.add_argument("--batch-size", type=int, default=2, help="batch of the example inputs traced (default 2)")
    parser.add_argument("--static", action="store_true", help="fix every input shape at the example's")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.name is None and args.pretrained is None:
        parser.error("give a registered model NAME or --pretrained DIR")
    if args.batch_size < 2:
        parser.error("--batch-size must be at least 2 (a batch of 1 is specialised by the exporter)")
    import zoo

    check_writable(Path(args.out).expanduser().resolve().parent)  # before building anything
    if args.pretrained is not None:
        directory = Path(args.pretrained).expanduser()
        if not directory.is_dir():
            raise zoo.PretrainedNotFoundError(f"--pretrained {args.pretrained}: no such directory (a folder written "
                                              "by save_pretrained / --save-model)")
        model = zoo.from_pretrained(directory)
        if args.name is not None and args.name.partition(".")[0] != model.zoo_name:
            raise zoo.InvalidConfigError(f"{directory} holds a {model.zoo_name!r} model, not {args.name!r}; "
                                         f"drop NAME or pass {model.zoo_name}")
    else:
        model = _resolve(args.name)
    out = Path(args.out).expanduser()
    path = export(model, args.format, out, example_inputs_for(model, args.batch_size), dynamic=not args.static)
    print(f"wrote {path} and {sidecar_path(path)}")
    return 0
