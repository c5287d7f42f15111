"""ViT vs timm (same state-dict layout, same outputs) and vs torchvision (through the key map)."""

import copy

import pytest
import timm
import torch
import torchvision
from timm.models import vision_transformer as timm_vit

import zoo
from zoo.shared.errors import InputError, InvalidConfigError
from zoo.shared.layers import resample_abs_pos_embed
from zoo.vision.vit import VisionTransformer, checkpoint_filter_fn, timm_to_torchvision, torchvision_to_timm

VARIANTS = ["vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_base_patch32_224",
            "vit_large_patch16_224", "vit_base_patch16_384"]
HEAVY = {"vit_large_patch16_224", "vit_base_patch16_384"}
TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
TOL = dict(atol=1e-5, rtol=1e-5)


def _perturb_norms(model):
    """LayerNorms start at 1 / 0; give them values so the comparison exercises them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def _timm_tiny(**kw):
    torch.manual_seed(0)
    return _perturb_norms(timm_vit.VisionTransformer(**{**TINY, **kw})).eval()


def test_the_family_is_registered():
    assert set(VARIANTS) <= set(zoo.list_models("vit*", domain="vision"))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in VARIANTS])
def test_matches_timm(name):
    torch.manual_seed(0)
    reference = _perturb_norms(timm.create_model(name, pretrained=False)).eval()
    with torch.device("meta"):  # the layout check needs no memory; weights come from timm below
        ours = zoo.create(name)
    ref_sd = reference.state_dict()
    assert list(ours.state_dict()) == list(ref_sd)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in ref_sd.items()}
    ours.load_state_dict(ref_sd, strict=True, assign=True)
    ours.eval()
    size = reference.patch_embed.img_size
    x = torch.randn(1 if name in HEAVY else 2, 3, *size)
    with torch.no_grad():
        feats = ours.forward_features(x)
        torch.testing.assert_close(feats, reference.forward_features(x), **TOL)
        torch.testing.assert_close(ours.forward_head(feats), reference.forward_head(feats), **TOL)
        torch.testing.assert_close(ours.forward_head(feats, pre_logits=True),
                                   reference.forward_head(feats, pre_logits=True), **TOL)


@pytest.mark.parametrize("kw", [dict(global_pool="avg"), dict(global_pool="avg", class_token=False),
                                dict(qkv_bias=False, mlp_ratio=2.0), dict(img_size=(32, 48))])
def test_config_options_match_timm(kw):
    reference = _timm_tiny(**kw)
    ours = VisionTransformer(**{**TINY, **kw}).eval()
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, *reference.patch_embed.img_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)


def test_dynamic_img_size_matches_timm():
    reference = _timm_tiny(dynamic_img_size=True)
    ours = VisionTransformer(**TINY, dynamic_img_size=True).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)
    with pytest.raises(InputError, match="multiples of the patch size"):
        ours(torch.randn(1, 3, 36, 40))


# -- torchvision through the key map ----------------------------------------------------------------


def _check_torchvision(tv_builder, tv_model, name, ours=None):
    """tv -> ours loads strictly with equal outputs; ours -> tv loads strictly into torchvision too."""
    tv_sd = tv_model.state_dict()
    if ours is None:
        with torch.device("meta"):
            ours = zoo.create(name)
        ours.load_state_dict(torchvision_to_timm(tv_sd), strict=True, assign=True)
    ours.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = tv_model(x)
        torch.testing.assert_close(ours(x), expected, **TOL)
        back = timm_to_torchvision(ours.state_dict())
        assert set(back) == set(tv_sd)
        assert all(torch.equal(back[k], tv_sd[k]) for k in tv_sd)
        with torch.device("meta"):
            again = tv_builder()
        again.load_state_dict(back, strict=True, assign=True)
        torch.testing.assert_close(again.eval()(x), expected, **TOL)


def test_torchvision_vit_b_16_loads_through_create(tmp_path):
    torch.manual_seed(0)
    tv_model = _perturb_norms(torchvision.models.vit_b_16()).eval()
    path = tmp_path / "vit_b_16-torchvision.pth"
    torch.save(tv_model.state_dict(), path)  # what torchvision publishes: a bare state dict
    ours = zoo.create("vit_base_patch16_224", pretrained=path)  # no layout declared: the map is found
    assert ours.load_report.layout == "torchvision"
    _check_torchvision(torchvision.models.vit_b_16, tv_model, "vit_base_patch16_224", ours)


def test_torchvision_vit_b_32_key_map_both_ways():
    torch.manual_seed(0)
    tv = torchvision.models.vit_b_32
    _check_torchvision(tv, _perturb_norms(tv()).eval(), "vit_base_patch32_224")


def test_torchvision_vit_l_16_key_map_both_ways():
    """Same code path as B/16 (whose outputs are compared above); here keys and shapes, on meta (free)."""
    with torch.device("meta"):
        tv_sd = torchvision.models.vit_l_16().state_dict()
        own = zoo.create("vit_large_patch16_224").state_dict()
    mapped = torchvision_to_timm(tv_sd)
    assert {k: v.shape for k, v in mapped.items()} == {k: v.shape for k, v in own.items()}
    back = timm_to_torchvision(own)
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in tv_sd.items()}


def test_old_torchvision_mlp_names_map_too():
    tv_sd = {"encoder.layers.encoder_layer_0.mlp.linear_1.weight": torch.zeros(1),
             "encoder.layers.encoder_layer_0.mlp.linear_2.bias": torch.zeros(1),
             "encoder.layers.encoder_layer_3.self_attention.out_proj.weight": torch.zeros(1),
             "heads.pre_logits.weight": torch.zeros(1)}
    assert set(torchvision_to_timm(tv_sd)) == {"blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias",
                                               "blocks.3.attn.proj.weight",
                                               "heads.pre_logits.weight"}  # unknown: left for the strict load to name


# -- resolution change on load ----------------------------------------------------------------------


def test_checkpoint_filter_resamples_pos_embed_like_timm():
    source = _timm_tiny()  # 4x4 grid
    target_timm = timm_vit.VisionTransformer(**{**TINY, "img_size": 56}).eval()  # 7x7 grid
    ours = VisionTransformer(**{**TINY, "img_size": 56}).eval()
    expected = timm_vit.checkpoint_filter_fn(source.state_dict(), target_timm)
    state = checkpoint_filter_fn(source.state_dict(), ours)
    assert state["pos_embed"].shape == (1, 1 + 49, 32)
    torch.testing.assert_close(state["pos_embed"], expected["pos_embed"], atol=0, rtol=0)
    assert torch.equal(state["pos_embed"][:, 0], source.pos_embed[:, 0])  # class token kept
    ours.load_state_dict(state, strict=True)
    target_timm.load_state_dict(expected, strict=True)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), target_timm(x), **TOL)
    # same grid: nothing to do; and the result is the shared resampling function's
    same = VisionTransformer(**TINY)
    assert torch.equal(checkpoint_filter_fn(source.state_dict(), same)["pos_embed"], source.pos_embed)
    torch.testing.assert_close(resample_abs_pos_embed(source.pos_embed, 7), state["pos_embed"], atol=0, rtol=0)


def test_create_with_another_img_size_resamples_pretrained(tmp_path):
    torch.manual_seed(0)
    small = zoo.create("vit_tiny_patch16_224", **TINY)
    zoo.save_pretrained(small, tmp_path / "src")
    path = tmp_path / "src" / "model.safetensors"
    big = zoo.create("vit_tiny_patch16_224", pretrained=path, **{**TINY, "img_size": 48})
    assert big.pos_embed.shape == (1, 37, 32)
    assert "pos_embed" in big.load_report.adapted
    assert any("pos_embed resampled" in n for n in big.load_report.notes)
    # the class token's embedding is kept as it was
    assert torch.equal(big.pos_embed[:, :1], small.pos_embed[:, :1])


# -- the zoo contract -------------------------------------------------------------------------------


def test_num_classes_and_in_chans_with_pretrained(tmp_path):
    torch.manual_seed(0)
    src = zoo.create("vit_tiny_patch16_224", **TINY)
    path = tmp_path / "tiny.pth"
    torch.save(src.state_dict(), path)
    model = zoo.create("vit_tiny_patch16_224", pretrained=path, **{**TINY, "num_classes": 3, "in_chans": 1})
    assert set(model.load_report.reinitialized) == {"head.weight", "head.bias"}
    assert model.load_report.adapted == ["patch_embed.proj.weight"]
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert torch.equal(model.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)


def test_timm_style_interface():
    model = zoo.create("vit_tiny_patch16_224", **TINY).eval()
    assert model.num_features == 32
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 1 + 16, 32)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 32)
    assert model.get_classifier() is model.head
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    assert model.zoo_config["num_classes"] == 5  # the registry's record is the registry's to change
    model.reset_classifier(0)
    assert model(x).shape == (2, 32)
    cfg = model.default_cfg
    assert cfg["input_size"] == (3, 32, 32) and cfg["mean"] == (0.5, 0.5, 0.5) and cfg["interpolation"] == "bicubic"
    with torch.device("meta"):
        tagged = zoo.create("vit_base_patch16_224.tv_in1k")
        big = zoo.create("vit_base_patch16_384")
    assert tagged.default_cfg["mean"] == (0.485, 0.456, 0.406) and tagged.default_cfg["crop_pct"] == round(224 / 256, 3)
    assert big.default_cfg["input_size"] == (3, 384, 384)


def test_grad_checkpointing_keeps_outputs_and_grads():
    torch.manual_seed(0)
    model = zoo.create("vit_tiny_patch16_224", **TINY).train()  # dropout is 0: train mode is deterministic
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    out.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out2 = model(x)
    out2.square().sum().backward()
    torch.testing.assert_close(out2, out, atol=0, rtol=0)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[k], atol=1e-6, rtol=1e-5)
    model.set_grad_checkpointing(False)
    assert not model.grad_checkpointing


def test_bad_inputs_raise_clear_errors():
    model = zoo.create("vit_tiny_patch16_224", **TINY).eval()
    with pytest.raises(InputError, match=r"\(batch, 3, height, width\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(InputError, match=r"\(batch, 3, height, width\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(InputError, match="floating-point"):
        model(torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8))
    with pytest.raises(InputError, match=r"built for \(32, 32\).*dynamic_img_size=True"):
        model(torch.randn(2, 3, 64, 64))


def test_bad_configs_raise_at_construction():
    with pytest.raises(InvalidConfigError, match="not divisible by patch_size"):
        zoo.create("vit_tiny_patch16_224", img_size=225)
    with pytest.raises(InvalidConfigError, match="global_pool"):
        VisionTransformer(**TINY, global_pool="max")
    with pytest.raises(InvalidConfigError, match="class_token"):
        VisionTransformer(**TINY, class_token=False)
    with pytest.raises(InvalidConfigError, match="multiple of num_heads"):
        VisionTransformer(**{**TINY, "num_heads": 3})
    with pytest.raises(InvalidConfigError, match=r"an int or \(height, width\)"):
        VisionTransformer(**{**TINY, "img_size": (32, 32, 32)})


# -- regularisation inside the model (dropouts are zero in every parity test above) ----------------


def test_stochastic_depth_drops_whole_residual_branches_in_training():
    torch.manual_seed(0)
    # drop-path rates rise linearly over the blocks: block 0 is never dropped, block 1 (rate 1) always
    model = VisionTransformer(**{**TINY, "depth": 2, "drop_path_rate": 1.0})
    assert [(b.drop_path1.p, b.drop_path2.p) for b in model.blocks] == [(0.0, 0.0), (1.0, 1.0)]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        dropped = model.train()(x)  # no dropout is configured: stochastic depth is the only randomness
        without_block1 = copy.deepcopy(model).eval()
        without_block1.blocks = without_block1.blocks[:1]
        torch.testing.assert_close(dropped, without_block1(x), atol=0, rtol=0)
        assert not torch.allclose(model.eval()(x), dropped)  # in eval every block counts


def test_attention_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    model = VisionTransformer(**{**TINY, "attn_drop_rate": 0.5})  # the only dropout configured
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = model.train()(x), model(x)
        assert not torch.allclose(a, b)  # a new mask on the attention weights per call
        model.eval()
        torch.testing.assert_close(model(x), model(x), atol=0, rtol=0)
        # with the same RNG state, training mode with rate 0 is the eval output
        same = copy.deepcopy(model)
        for block in same.blocks:
            block.attn.attn_drop = 0.0
        torch.testing.assert_close(same.train()(x), model(x), atol=0, rtol=0)
