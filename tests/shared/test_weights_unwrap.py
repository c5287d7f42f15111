"""``pretrained=`` reads checkpoints as the tools that make them save them: DDP, torch.compile, EMA
wrappers, AveragedModel, Lightning and our own Trainer. Each file is written by the real tool
(Lightning's layout is mirrored by hand: it is not a dependency) and loaded through ``zoo.create``;
the weights must arrive unchanged and the load report must say what was unwrapped."""

import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import TensorDataset

import zoo
from zoo.shared import registry
from zoo.shared.training import ClassificationTask, ModelEMA, TrainConfig, Trainer


def _small(**kw):
    # resnet18 at its real layout with a narrow stem: small files, BatchNorm buffers included
    return zoo.create("resnet18", base_channels=8, **kw)


@pytest.fixture
def reference():
    torch.manual_seed(0)
    model = _small()
    with torch.no_grad():  # BatchNorm statistics away from their init, so buffers are compared too
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.num_batches_tracked += 7
    return model


def assert_same_weights(model, expected: dict):
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group, as torchrun would give rank 0 of a world of 1."""
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


# -- wrappers that prefix every key -----------------------------------------------------------------


def test_ddp_wrapped_model(reference, tmp_path, process_group):
    ddp = nn.parallel.DistributedDataParallel(reference)
    path = tmp_path / "ddp.pth"
    torch.save(ddp.state_dict(), path)
    model = _small(pretrained=path)
    assert_same_weights(model, _weights(reference))
    assert model.load_report.unwrapped == ["stripped prefix 'module.'"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_model_and_compiled_ddp(reference, tmp_path, process_group):
    compiled = torch.compile(reference)  # wrapping only: nothing is compiled until it runs
    torch.save(compiled.state_dict(), tmp_path / "compiled.pth")
    model = _small(pretrained=tmp_path / "compiled.pth")
    assert_same_weights(model, _weights(reference))
    assert model.load_report.unwrapped == ["stripped prefix '_orig_mod.'"]

    # the two nest: DDP around a compiled model, as a compiled training script under torchrun saves it
    ddp = nn.parallel.DistributedDataParallel(torch.compile(reference))
    torch.save(ddp.state_dict(), tmp_path / "ddp-compiled.pth")
    model = _small(pretrained=tmp_path / "ddp-compiled.pth")
    assert_same_weights(model, _weights(reference))
    assert model.load_report.unwrapped == ["stripped prefix 'module._orig_mod.'"]


def test_averaged_model_drops_its_counter(reference, tmp_path):
    swa = AveragedModel(reference)
    torch.manual_seed(1)
    other = copy.deepcopy(reference)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    swa.update_parameters(reference)
    swa.update_parameters(other)  # the average now differs from both models
    torch.save(swa.state_dict(), tmp_path / "swa.pth")
    assert "n_averaged" in swa.state_dict()
    model = _small(pretrained=tmp_path / "swa.pth")
    assert_same_weights(model, _weights(swa.module))
    assert model.load_report.unwrapped == [
        "stripped prefix 'module.'", "ignored 1 entry outside 'module.': n_averaged"]


def _timm_ema(model, decay):
    from timm.utils import ModelEmaV3  # timm is a dependency; its EMA saves module.* like ours

    return ModelEmaV3(model, decay=decay)


@pytest.mark.parametrize("make_ema", [ModelEMA, _timm_ema], ids=["ours", "timm"])
def test_ema_wrappers(reference, tmp_path, make_ema):
    ema = make_ema(reference, decay=0.5)
    with torch.no_grad():
        for p in reference.parameters():
            p.mul_(2)
    ema.update(reference)
    torch.save(ema.state_dict(), tmp_path / "ema.pth")
    model = _small(pretrained=tmp_path / "ema.pth")
    assert_same_weights(model, _weights(ema.module))
    assert not torch.equal(model.conv1.weight, reference.conv1.weight)  # the average, not the model
    assert "stripped prefix 'module.'" in model.load_report.unwrapped


# -- training checkpoints: the weights sit in one entry beside optimizer state and counters ---------------


def test_our_trainer_last_and_best(tmp_path):
    torch.manual_seed(0)
    net = _small(num_classes=3)
    data = TensorDataset(torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]))
    cfg = TrainConfig(epochs=1, batch_size=4, lr=0.1, output_dir=str(tmp_path / "run"), device="cpu",
                      progress=False, verbose=False, tensorboard=False, plot=False)
    before = _weights(net)
    trainer = Trainer(net, ClassificationTask(topk=(1,)), data, data, cfg)
    trainer.fit()
    trained = _weights(trainer.model)
    assert not all(torch.equal(before[k], trained[k]) for k in before)  # one real step was taken

    model = _small(num_classes=3, pretrained=tmp_path / "run" / "last.pt")
    assert_same_weights(model, trained)
    assert model.load_report.unwrapped == ["zoo Trainer checkpoint (last.pt): its 'model' entry"]
    model = _small(num_classes=3, pretrained=tmp_path / "run" / "best.pt")
    assert_same_weights(model, trained)  # one epoch: the best is the last
    assert model.load_report.unwrapped == ["zoo best-model checkpoint (best.pt): its 'model' entry"]


def _lightning_checkpoint(model: nn.Module, attribute: str = "model") -> dict:
    """What ``lightning.Trainer.save_checkpoint`` writes (2.x) for a LightningModule holding
    ``self.<attribute> = model`` and a weighted loss ``self.criterion``: the keys and types of a
    checkpoint made with lightning 2.6.6, values made up."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    opt.step()  # momentum buffers: optimizer state holds tensors keyed by int
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    progress = {"total": {"ready": 1, "completed": 1}, "current": {"ready": 1, "completed": 1}}
    state = {f"{attribute}.{k}": v for k, v in model.state_dict().items()}
    state["criterion.weight"] = torch.ones(1000)
    return {
        "epoch": 1,
        "global_step": 1,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_loop.batch_progress": progress,
                               "epoch_progress": progress}},
        "callbacks": {},
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [sched.state_dict()],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 0.1},
    }


def test_lightning_checkpoint(reference, tmp_path):
    ckpt = _lightning_checkpoint(copy.deepcopy(reference), attribute="net")
    # the optimizer step above moved the copy's weights: what was saved is what must come back
    expected = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    torch.save(ckpt, tmp_path / "epoch=0-step=1.ckpt")
    model = _small(pretrained=tmp_path / "epoch=0-step=1.ckpt")
    assert_same_weights(model, expected)
    assert model.load_report.unwrapped == [
        "Lightning checkpoint: its 'state_dict' entry",
        "stripped prefix 'net.'",
        "ignored 1 entry outside 'net.': criterion.weight",
    ]


def test_lightning_checkpoint_that_does_not_fit_names_the_keys(reference, tmp_path):
    ckpt = _lightning_checkpoint(reference)
    del ckpt["state_dict"]["model.layer1.0.conv1.weight"]
    torch.save(ckpt, tmp_path / "broken.ckpt")
    # the prefix is still removed so the error speaks the model's names; the outside key stays
    with pytest.raises(zoo.CheckpointMismatchError) as err:
        _small(pretrained=tmp_path / "broken.ckpt")
    assert err.value.missing == ["layer1.0.conv1.weight"]
    assert err.value.unexpected == ["criterion.weight"]


@pytest.mark.parametrize("entry", ["state_dict", "model", "model_state_dict"])
def test_plain_training_checkpoints(reference, tmp_path, entry):
    opt = torch.optim.AdamW(reference.parameters())
    torch.save({entry: reference.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "best_acc": 0.5},
               tmp_path / "ckpt.pth")
    model = _small(pretrained=tmp_path / "ckpt.pth")
    assert_same_weights(model, _weights(reference))
    assert model.load_report.unwrapped == [f"checkpoint: its {entry!r} entry"]


# -- a prefix that belongs to the model stays --------------------------------------------------------------


class _Holder(nn.Module):
    """A model whose own keys start with ``model.`` (a wrapper-like attribute name)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return self.model(x) * self.scale


@pytest.fixture
def holder_registered(monkeypatch):
    zoo.list_models()  # import every domain first: the registry copy below must hold them all
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_model("holder_test", _Holder, domain="test", task="test")


def test_model_own_prefix_is_kept_and_a_wrapper_around_it_removed(holder_registered, tmp_path, process_group):
    torch.manual_seed(0)
    ref = _Holder()
    torch.save(ref.state_dict(), tmp_path / "plain.pth")  # keys model.weight, model.bias, scale
    model = zoo.create("holder_test", pretrained=tmp_path / "plain.pth")
    assert_same_weights(model, _weights(ref))
    assert model.load_report.unwrapped == []

    # saved by a LightningModule whose attribute is also called "model": model.model.weight ...
    torch.save({"state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()},
                "pytorch-lightning_version": "2.6.6", "epoch": 0}, tmp_path / "lit.ckpt")
    model = zoo.create("holder_test", pretrained=tmp_path / "lit.ckpt")
    assert_same_weights(model, _weights(ref))
    assert model.load_report.unwrapped[1:] == ["stripped prefix 'model.'"]

    torch.save(nn.parallel.DistributedDataParallel(ref).state_dict(), tmp_path / "ddp.pth")
    model = zoo.create("holder_test", pretrained=tmp_path / "ddp.pth")
    assert_same_weights(model, _weights(ref))
    assert model.load_report.unwrapped == ["stripped prefix 'module.'"]
