"""The Transformer's forward under torch.compile (one graph, no breaks) and torch.export."""

import pytest
import torch

import zoo

torch.set_num_threads(1)


def _model_and_inputs():
    torch.manual_seed(0)
    model = zoo.create("transformer_tiny", dim=32, num_heads=4, ffn_dim=64).eval()
    src = torch.randint(3, 64, (3, 9))
    tgt = torch.randint(3, 128, (3, 7))
    src[1, 6:] = 0  # padding: the masks are part of the graph
    tgt[2, 4:] = 0
    return model, src, tgt


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
def test_compile_takes_the_forward_in_one_graph(norm_first):
    model, src, tgt = _model_and_inputs()
    model.encoder.layers[0].norm_first = model.decoder.layers[0].norm_first = norm_first
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: a graph break raises
    with torch.no_grad():
        torch.testing.assert_close(compiled(src, tgt), model(src, tgt), atol=1e-5, rtol=1e-5)


def test_export_matches_eager_on_new_inputs():
    model, src, tgt = _model_and_inputs()
    exported = torch.export.export(model, (src, tgt))
    other_src, other_tgt = torch.randint(3, 64, (3, 9)), torch.randint(3, 128, (3, 7))
    other_src[0, 2:] = 0  # other padding than the traced inputs
    with torch.no_grad():
        for s, t in ((src, tgt), (other_src, other_tgt)):
            torch.testing.assert_close(exported.module()(s, t), model(s, t), atol=1e-5, rtol=1e-5)
