"""The generative recipe: a smoke run per method, sample grids, bitwise resume of a GAN run (both
optimizers), saved models that `sample` draws from, and the errors a user can meet."""

import json

import numpy as np
import pytest
import torch

from zoo.generative import sample as sampling
from zoo.generative import train
from zoo.generative.data import load_image_folder
from zoo.shared.errors import DatasetError, InputError, InvalidConfigError

pytest.importorskip("sklearn")
TINY = ["--max-images", "32", "--batch-size", "16", "--width", "8", "--grid-n", "4", "--grid-steps", "2",
        "--timesteps", "20", "--iwae-k", "2", "--no-progress"]


def _run(tmp_path, model, *extra, out="run"):
    args = train.build_parser().parse_args(["--model", model, "--output-dir", str(tmp_path / out), *TINY, *extra])
    return train.run(args)


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp", "vae", "vae_mlp", "ddpm"])
def test_a_smoke_run_writes_a_grid_per_epoch_and_a_model_sample_can_read(model, tmp_path):
    summary = _run(tmp_path, model, "--epochs", "2")
    run_dir = tmp_path / "run"
    assert summary["epochs"] == 2 and summary["steps"] == 4
    grids = [run_dir / "samples" / f"epoch_{e:03d}.png" for e in (1, 2)]
    assert summary["grids"] == [str(g) for g in grids] and all(g.stat().st_size > 0 for g in grids)
    from PIL import Image

    with Image.open(grids[0]) as img:
        assert img.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2x2 images of 32 px with 2 px padding
    assert (run_dir / "metrics.csv").read_text().count("\n") == 3  # header + one row per epoch
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4
    grid = sampling.sample(None, run_dir / "model", n=3, steps=2 if model == "ddpm" else None, out=tmp_path / "s.png")
    assert grid.is_file()
    if model.startswith("vae"):
        assert summary["test_nll_iwae"] > 0 and (run_dir / "reconstructions.png").is_file()
    if model in ("dcgan", "wgan_gp"):
        assert (run_dir / "discriminator" / "model.safetensors").is_file()
    if model == "ddpm":
        assert (run_dir / "model" / "scheduler_config.json").is_file()


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp", "ddpm"])
def test_resume_from_the_middle_of_an_epoch_is_bitwise_identical(model, tmp_path):
    extra = ["--n-critic", "2"] if model == "wgan_gp" else []
    _run(tmp_path, model, "--epochs", "2", *extra, out="straight")
    _run(tmp_path, model, "--epochs", "2", "--max-steps", "3", *extra, out="resumed")  # stops inside epoch 2
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["batch"] == 1
    _run(tmp_path, model, "--epochs", "2", "--resume", *extra, out="resumed")
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    for part in ("nets", "optimizers"):
        for net in a[part]:
            flat_a, flat_b = _flatten(a[part][net]), _flatten(b[part][net])
            assert flat_a.keys() == flat_b.keys()
            for k in flat_a:
                assert torch.equal(flat_a[k], flat_b[k]), f"{part}/{net}/{k} differs after resuming"
    if model == "ddpm":
        assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"] if isinstance(a["ema"][k], torch.Tensor))
    assert a["history"] == [{**r, "time": a["history"][i]["time"]} for i, r in enumerate(b["history"])]
    assert (tmp_path / "resumed" / "samples" / "epoch_002.png").read_bytes() == \
        (tmp_path / "straight" / "samples" / "epoch_002.png").read_bytes()


def _flatten(state, prefix=""):
    out = {}
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, list) else []
    for k, v in items:
        if isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, (dict, list)):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = torch.tensor(float(v)) if isinstance(v, (int, float)) and v is not None else None
    return {k: v for k, v in out.items() if v is not None}


def test_repeats_make_an_epoch_of_several_shuffled_passes_over_the_images():
    one = train._batches(32, 16, seed=0, epoch=3, drop_last=True)
    three = train._batches(32, 16, seed=0, epoch=3, drop_last=True, repeats=3)
    assert len(three) == 6 and all(torch.equal(a, b) for a, b in zip(one, three))  # the first pass is unchanged
    passes = torch.cat(three).view(3, 32)
    assert all(sorted(p.tolist()) == list(range(32)) for p in passes)  # each pass sees every image once
    assert not torch.equal(passes[0], passes[1])  # in another order


def test_max_minutes_stops_at_an_epoch_end_and_finishes_the_run(tmp_path):
    summary = _run(tmp_path, "vae", "--epochs", "50", "--repeats", "2", "--max-minutes", "1e-9")
    assert summary["stopped_by_time"] and summary["epochs"] == 1 and summary["steps"] == 4  # 2 passes x 2 batches
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file() and summary["test_nll_iwae"] > 0
    untimed = _run(tmp_path, "vae", "--epochs", "2", out="untimed")
    assert not untimed["stopped_by_time"] and untimed["epochs"] == 2


def test_the_ddpm_recipe_keeps_an_ema_with_warm_up(tmp_path):
    _run(tmp_path, "ddpm", "--epochs", "1")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["ema"]["_extra_state"]["updates"] == 2
    # after two updates with warm-up the decay was 1/10 and 2/11: the EMA is close to, not equal to, the model
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    diffs = [(ema[k] - v).abs().max().item() for k, v in state["nets"]["model"].items() if v.is_floating_point()]
    assert 0 < max(diffs) < 1e-2


def _write_pngs(folder, specs):
    from PIL import Image

    for i, (mode, size) in enumerate(specs):
        folder.mkdir(parents=True, exist_ok=True)
        channels = {"L": 1, "RGB": 3}[mode]
        array = (np.random.default_rng(i).random((size, size, channels)) * 255).astype(np.uint8)
        Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(folder / f"{i}.png")


def test_a_ddpm_at_the_digits_native_8x8_trains_and_its_grid_shows_each_pixel_as_a_block(tmp_path):
    from PIL import Image

    from zoo.generative.grid import save_grid

    summary = _run(tmp_path, "ddpm", "--img-size", "8", "--epochs", "1")
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["config"]["sample_size"] == 8
    with Image.open(summary["grids"][0]) as img:
        assert img.size == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 8x8 samples enlarged 4x for the eye
    images = torch.rand(3, 1, 8, 8)
    with Image.open(save_grid(images, tmp_path / "g.png", nrow=3, padding=0)) as img:
        tiles = torch.from_numpy(np.asarray(img.convert("L"), dtype=np.float32) / 255)
    assert tiles.shape == (32, 96)
    expected = (images * 255 + 0.5).clamp(0, 255).floor() / 255  # torchvision's uint8 rounding
    for i in range(3):
        tile = tiles[:, 32 * i:32 * (i + 1)]
        torch.testing.assert_close(tile, expected[i, 0].repeat_interleave(4, 0).repeat_interleave(4, 1))
    with Image.open(save_grid(torch.rand(2, 1, 32, 32), tmp_path / "big.png", nrow=2, padding=0)) as img:
        assert img.size == (64, 32)  # 32 px and up: as they are


def test_an_image_folder_trains_and_mixed_sizes_or_channels_are_refused(tmp_path):
    _write_pngs(tmp_path / "ok" / "a", [("RGB", 16)] * 6)
    _write_pngs(tmp_path / "ok" / "b", [("RGB", 16)] * 6)
    data = load_image_folder(tmp_path / "ok")
    assert data.shape == (3, 16, 16) and len(data.train) + len(data.test) == 12 and data.train_labels is not None
    summary = _run(tmp_path, "dcgan", "--data", str(tmp_path / "ok"), "--img-size", "16", "--epochs", "1")
    assert summary["epochs"] == 1
    _write_pngs(tmp_path / "sizes", [("RGB", 16), ("RGB", 16), ("RGB", 32)])
    with pytest.raises(DatasetError, match=r"mixes image sizes.*2 images of 3 channels 16x16.*1 images of 3 channels 32x32"):
        load_image_folder(tmp_path / "sizes")
    _write_pngs(tmp_path / "modes", [("RGB", 16), ("L", 16)])
    with pytest.raises(DatasetError, match="1 channel 16x16"):
        load_image_folder(tmp_path / "modes")
    with pytest.raises(DatasetError, match="--img-size 16"):
        _run(tmp_path, "dcgan", "--data", str(tmp_path / "ok"), "--img-size", "32", out="wrong")
    with pytest.raises(DatasetError, match="does not exist|no such folder"):
        _run(tmp_path, "dcgan", "--data", str(tmp_path / "missing"), out="missing")


def test_bad_recipe_inputs_are_refused(tmp_path):
    with pytest.raises(InputError, match="more than the 20 steps"):
        _run(tmp_path, "ddpm", "--grid-steps", "50")
    with pytest.raises(InvalidConfigError, match="not a generative recipe"):
        _run(tmp_path, "resnet18")
    _run(tmp_path, "vae", "--epochs", "1")
    with pytest.raises(InvalidConfigError, match="--resume"):
        _run(tmp_path, "vae", "--epochs", "1")  # the folder holds a run
    with pytest.raises(InvalidConfigError, match="'vae' recipe"):
        _run(tmp_path, "dcgan", "--epochs", "1", "--resume")


def test_sample_refuses_zero_images_too_many_steps_and_the_wrong_model(tmp_path):
    _run(tmp_path, "ddpm", "--epochs", "1")
    model_dir = tmp_path / "run" / "model"
    with pytest.raises(InputError, match="positive integer"):
        sampling.sample("ddpm", model_dir, n=0)
    with pytest.raises(InputError, match="more than the 20 steps"):
        sampling.sample("unet2d_small", model_dir, n=2, steps=21)
    from zoo.shared.errors import CheckpointError

    with pytest.raises(CheckpointError, match="unet2d_small"):
        sampling.sample("dcgan_generator", model_dir, n=2)
    a = sampling.sample("ddpm", model_dir, n=2, steps=20, out=tmp_path / "a.png")
    b = sampling.sample("ddpm", model_dir, n=2, steps=20, out=tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()  # seeded: the same grid twice


def test_the_zoo_cli_name_reaches_the_recipe(tmp_path):
    """`zoo train dcgan_generator ...` calls main(["--model", "dcgan_generator", ...])."""
    assert train.recipe_of("dcgan_generator")[0] == "dcgan"
    assert train.recipe_of("vae_mlp")[2] == ("vae_mlp",)
    assert train.recipe_of("unet2d_ddpm_cifar10")[2] == ("unet2d_ddpm_cifar10",)
    assert train.main(["--model", "dcgan_generator", "--output-dir", str(tmp_path / "cli"), *TINY, "--epochs", "1"]) == 0


def test_a_hugging_face_dataset_directory_trains(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    images = [Image.fromarray((np.random.default_rng(i).random((16, 16)) * 255).astype(np.uint8), "L")
              for i in range(20)]
    ds = datasets.Dataset.from_dict({"img": images, "label": [i % 2 for i in range(20)]},
                                    features=datasets.Features({"img": datasets.Image(),
                                                                "label": datasets.ClassLabel(names=["a", "b"])}))
    datasets.DatasetDict({"train": ds.select(range(16)), "test": ds.select(range(16, 20))}).save_to_disk(tmp_path / "hf")
    from zoo.generative.data import load_images

    data = load_images(str(tmp_path / "hf"), 16)
    assert data.train.shape == (16, 1, 16, 16) and data.test.shape == (4, 1, 16, 16)
    torch.testing.assert_close(data.train[3, 0], torch.from_numpy(np.array(images[3])).float() / 255)
    summary = _run(tmp_path, "vae", "--data", str(tmp_path / "hf"), "--img-size", "16", "--epochs", "1")
    assert summary["epochs"] == 1 and summary["test_nll_iwae"] > 0
    mixed = datasets.Dataset.from_dict({"img": images[:2] + [images[2].convert("RGB")]},
                                       features=datasets.Features({"img": datasets.Image()}))
    mixed.save_to_disk(tmp_path / "mixed")
    with pytest.raises(DatasetError, match="mixes image sizes or channel counts"):
        load_images(str(tmp_path / "mixed"), 16)
