"""Every registered model x every export format, on the registry's tiny test configs: the exported
file (run by ONNX Runtime for ONNX) equals eager within 1e-4 at batch sizes and lengths other than the
traced example's; the pairs that cannot export are exactly those in ``zoo.deploy.export.UNSUPPORTED``
and say why.

Each model is traced by torch.export once for its three formats; registered names whose tiny configs
build the same network (bert / bert_base_uncased / ..., the ResNets of one block type) share that work.
"""

import json
import re

import pytest
import torch

import zoo
from zoo.deploy.export import FORMATS, UNSUPPORTED, ExportError, export_formats, load, shrink
from zoo.shared.registry import get_entry

MODELS = zoo.list_models()
_CACHE: dict = {}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)

    def get(name):
        spec = get_entry(name).test
        key = (get_entry(name).builder, json.dumps(spec.config, sort_keys=True, default=str))
        if key not in _CACHE:
            torch.manual_seed(0)
            model = zoo.create(name, **spec.config).eval()
            folder = tmp_path_factory.mktemp(name)
            torch.manual_seed(1)
            results = export_formats(model, {f: folder / f"model{s}" for f, s in FORMATS.items()},
                                     spec.inputs(model.zoo_config, 2))
            _CACHE[key] = (model, results)
        model, results = _CACHE[key]
        return model, spec, results

    return get


def _outputs(out):
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def _reasons(text):
    """What a table entry's reason pins down: the files it names and the kind of failure."""
    return re.findall(r"[\w/]+\.py|aten\.\w+|data-dependent|None|autograd\.Function|another batch size", text)


@pytest.mark.slow  # the first format of a model exports all three: up to ~20 s on a loaded 2-core machine
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", MODELS)
def test_export_runs_and_matches_eager(name, fmt, exported):
    model, spec, results = exported(name)
    result = results[fmt]
    why = UNSUPPORTED.get((name, fmt))
    if why is not None:
        assert isinstance(result, ExportError), (
            f"{name} now exports to {fmt}: remove ({name!r}, {fmt!r}) from UNSUPPORTED in deploy/export.py")
        missing = [part for part in _reasons(why) if part not in result.reason]
        assert not missing, f"UNSUPPORTED says {why!r} but the exporter says {result.reason!r}"
        return
    assert not isinstance(result, ExportError), f"{result} (fix it, or list the pair in UNSUPPORTED with this reason)"
    runner = load(result)
    cfg = model.zoo_config
    torch.manual_seed(2)
    cases = [spec.inputs(cfg, 2), spec.inputs(cfg, 3)]
    shorter = shrink(cases[1], [i["shape"] for i in runner.metadata["inputs"]])
    if any(a.shape != b.shape for a, b in zip(shorter, cases[1])):
        try:
            with torch.inference_mode():
                model(*shorter)
            cases.append(shorter)
        except Exception:  # the model itself needs a size multiple of something: nothing to test
            pass
    for inputs in cases:
        with torch.inference_mode():
            expected = _outputs(model(*inputs))
        got = _outputs(runner(*inputs))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4,
                                       msg=lambda m: f"{name} {fmt} at input shapes "
                                                     f"{[tuple(t.shape) for t in inputs]}: {m}")


def test_unsupported_table_names_registered_models_and_formats():
    assert {n for n, _ in UNSUPPORTED} <= set(MODELS)
    assert {f for _, f in UNSUPPORTED} <= set(FORMATS)
    assert all(why.strip() for why in UNSUPPORTED.values())
