"""SimCLR (Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", arXiv:2002.05709).

Each image is augmented twice; an encoder f (any registered backbone without its classifier) and a
projection head g (an MLP, ``g(h) = W2 relu(W1 h)``) map both views to ``z``; the NT-Xent loss makes
the two views of an image the most similar pair among the 2N views of the batch:

    l(i, j) = -log( exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),   sim = cosine

averaged over all 2N (i, j) positive pairs. After pretraining the head is dropped and f's features
are used (a linear probe, or fine-tuning).

Large batches. NT-Xent is not a sum over micro-batches: every view's negatives are the whole
batch, so accumulating the gradients of separately computed micro-batch losses (the Trainer's
``grad_accum_steps``) optimises a different loss, with fewer negatives. :class:`SimCLRTask` gets
a large batch within memory with a *gradient cache* (Gao et al. 2021, arXiv:2101.06983): it embeds
every chunk of ``chunk_size`` views without a graph, computes the loss of the whole batch and its
gradient with respect to the embeddings, then re-runs each chunk with a graph and backpropagates
that chunk's embedding gradient. The parameter gradient equals the full batch's (tested), at the
cost of one extra forward pass. Exactly so when the encoder's output does not depend on which
other views share its chunk; BatchNorm in training mode normalises with the chunk's statistics,
so with BatchNorm chunking changes the statistics (as splitting a batch over GPUs does, SimCLR's
"global BN" point), not the gradient bookkeeping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from zoo.shared.errors import InvalidConfigError
from zoo.shared.training import Task

__all__ = ["simclr_augment", "TwoViews", "ProjectionHead", "SimCLR", "nt_xent", "SimCLRTask", "encoder_features",
           "linear_probe"]


def simclr_augment(img_size: int, crop_scale: tuple[float, float] = (0.5, 1.0), degrees: float = 15.0,
                   noise: float = 0.1, background: float = 0.0):
    """The two-view augmentation for small grayscale images (tensors already normalised), with
    torchvision transforms v2: random resized crop, a random affine (rotation, shift, shear),
    Gaussian blur half the time, additive Gaussian noise.

    No horizontal flip: a mirrored digit is another symbol (or another digit: a mirrored 2 is not
    a 2), so invariance to flips would teach the wrong equivalence. No colour jitter: one channel.
    """
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(img_size, scale=crop_scale, ratio=(0.8, 1.25), antialias=True),
        v2.RandomAffine(degrees=degrees, translate=(0.1, 0.1), shear=10, fill=background),
        v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.5),
        v2.GaussianNoise(sigma=noise, clip=False),
    ])


class TwoViews(Dataset):
    """``(view_1, view_2)`` of each image of ``base`` (an ``(image, label)`` dataset); labels are
    withheld."""

    def __init__(self, base: Dataset, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        image = self.base[i][0]
        return self.transform(image), self.transform(image)


class ProjectionHead(nn.Module):
    """g(h) = W2 relu(W1 h), the paper's nonlinear projection (its section 4.2)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(h)))


class SimCLR(nn.Module):
    """Encoder f (a registered backbone built with ``num_classes=0``) followed by the head g."""

    def __init__(self, encoder: nn.Module, feature_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.encoder = encoder
        self.head = ProjectionHead(feature_dim, hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Normalised-temperature cross-entropy over the 2N views: ``z1[i]``'s positive is ``z2[i]`` and
    the other 2N - 2 views are its negatives; a view is never compared with itself."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent expects two (N, D) batches of the same shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


def _positive_hits(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """How many of the 2N views find their own positive as the most similar other view."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    sim = (z @ z.T).fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return (sim.argmax(-1) == positives).sum()


class _KeepNormStatistics:
    """Restores every BatchNorm's running statistics on exit: the graph-free pass of the gradient
    cache must not count as an update of them (the pass with a graph does)."""

    def __init__(self, model: nn.Module):
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                      and m.track_running_stats and m.training]

    def __enter__(self):
        self.saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in self.norms]

    def __exit__(self, *exc):
        with torch.no_grad():
            for m, buffers in zip(self.norms, self.saved):
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)


class SimCLRTask(Task):
    """Batches of ``(view_1, view_2)``; loss :func:`nt_xent` of the projections.

    ``chunk_size``: largest number of views run through the model at once; a batch of 2N views
    above it goes through the gradient cache (module docstring): ``training_step`` then does the
    backward passes itself and returns the loss as a graph-free leaf, so the trainer's own backward
    adds nothing. Set ``grad_scaler`` to the trainer's scaler when it has one (fp16 on CUDA) so
    those backward passes are scaled like its own. Evaluation reports the loss and ``pos_acc``, the
    fraction of views whose nearest other view is their positive.
    """

    monitor = ("val/loss", "min")

    def __init__(self, temperature: float = 0.5, chunk_size: int | None = None):
        if temperature <= 0:
            raise InvalidConfigError(f"temperature must be > 0, got {temperature}")
        if chunk_size is not None and chunk_size < 1:
            raise InvalidConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        self.temperature, self.chunk_size = temperature, chunk_size
        self.grad_scaler = None

    def training_step(self, model, batch):
        views = torch.cat([batch[0], batch[1]])
        if self.chunk_size is None or len(views) <= self.chunk_size:
            z1, z2 = model(views).chunk(2)
            return nt_xent(z1, z2, self.temperature)
        return self.gradient_cache_step(model, views)

    def gradient_cache_step(self, model, views: torch.Tensor) -> torch.Tensor:
        """Backpropagate the whole batch's NT-Xent chunk by chunk (see the module docstring)."""
        chunks = views.split(self.chunk_size)
        rng_states = []
        with torch.no_grad(), _KeepNormStatistics(model):
            embeddings = []
            for chunk in chunks:
                rng_states.append(_rng_state(chunk.device))  # dropout draws the same masks again below
                embeddings.append(model(chunk))
        z = torch.cat(embeddings).detach().requires_grad_()
        loss = nt_xent(*z.chunk(2), self.temperature)
        scaled = self.grad_scaler.scale(loss) if self.grad_scaler is not None else loss
        (grad_z,) = torch.autograd.grad(scaled, z)
        for chunk, grad, state in zip(chunks, grad_z.split(self.chunk_size), rng_states):
            _set_rng_state(state, chunk.device)
            model(chunk).backward(grad.to(z.dtype))
        return loss.detach().requires_grad_()  # the trainer's backward of a leaf adds no gradient

    def evaluation_step(self, model, batch):
        z1, z2 = model(torch.cat([batch[0], batch[1]])).chunk(2)
        n = len(z1)
        return {"loss": nt_xent(z1, z2, self.temperature) * n, "pos_acc": _positive_hits(z1, z2) / 2,
                "count": n}


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(state, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


# ------------------------------------------------------------------------------------------------
# Evaluation: a linear probe on frozen features
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def encoder_features(encoder: nn.Module, dataset: Dataset, device, batch_size: int = 256):
    """(features, labels) of every ``(image, label)`` of ``dataset``, the encoder in eval mode."""
    from torch.utils.data import DataLoader

    was = encoder.training
    encoder.eval()
    feats, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size):
        feats.append(encoder(x.to(device)).flatten(1).float().cpu())
        labels.append(torch.as_tensor(y))
    encoder.train(was)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def linear_probe(encoder: nn.Module, data, device="cpu", cs=(0.01, 0.1, 1.0, 10.0)) -> dict:
    """Logistic regression (scikit-learn) on the frozen encoder's standardised features of the
    training images; the inverse regularisation C is chosen on the validation images, the test
    images are scored once."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    device = torch.device(device)
    x_fit, y_fit = encoder_features(encoder, data.train, device)
    x_val, y_val = encoder_features(encoder, data.val, device)
    x_test, y_test = encoder_features(encoder, data.test, device)
    best = None
    for c in cs:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        probe.fit(x_fit, y_fit)
        val = probe.score(x_val, y_val)
        if best is None or val > best[0]:
            best = (val, c, probe)
    val, c, probe = best
    return {"probe/C": c, "probe/val_acc": float(val), "probe/test_acc": float(probe.score(x_test, y_test))}
