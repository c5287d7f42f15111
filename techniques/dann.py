"""Domain-adversarial training of neural networks, DANN (Ganin et al. 2016, arXiv:1505.07818).

Three parts: a feature extractor G_f (any registered image backbone built without its classifier),
a label classifier G_y on the features, and a domain classifier G_d that tells source features from
target features. G_d sits behind a gradient-reversal layer: identity forward, gradient times
-lambda backward. So one backward pass trains G_d to separate the domains while G_f learns to make
them inseparable, and G_y to classify the (labelled) source images:

    loss = CE(G_y(G_f(x_s)), y_s) + BCE(G_d(R_lambda(G_f([x_s; x_t]))), [0; 1])

The paper's schedules, with p in [0, 1] the training progress:

    lambda_p = 2 / (1 + exp(-gamma p)) - 1        gamma = 10 (the domain signal is faded in)
    mu_p     = mu_0 / (1 + alpha p)^beta          alpha = 10, beta = 0.75 (SGD learning rate)

Target labels never enter training; they only score the result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from zoo.shared.errors import InvalidConfigError
from zoo.shared.layers.grad_reverse import GradientReversal
from zoo.shared.training import Callback, ClassificationTask

__all__ = ["grl_lambda", "annealed_lr_factor", "DANN", "DANNTask", "DANNSchedule", "DomainPairs", "SHIFTS",
           "shift_images"]


def grl_lambda(progress: float, gamma: float = 10.0) -> float:
    """The paper's adaptation factor lambda_p = 2 / (1 + exp(-gamma p)) - 1, from 0 to ~1."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def annealed_lr_factor(progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """mu_p / mu_0 = 1 / (1 + alpha p)^beta, the paper's learning-rate annealing."""
    return 1.0 / (1.0 + alpha * progress) ** beta


class DANN(nn.Module):
    """A registered image classifier ``net`` split into G_f (everything up to its last linear layer:
    ``net.forward_head(net.forward_features(x), pre_logits=True)``) and G_y (``net.get_classifier()``),
    plus the domain classifier G_d behind gradient reversal.

    ``forward(x)`` is ``net(x)``, the label classifier's logits, so evaluation measures the classifier
    alone and ``net`` is saved as the registered model it is. :meth:`forward_train` also returns the
    domain classifier's logits for source and target.
    """

    def __init__(self, net: nn.Module, domain_hidden: int = 1024):
        super().__init__()
        self.net = net
        feature_dim = net.get_classifier().in_features
        self.grl = GradientReversal(0.0)  # lambda follows DANNSchedule
        # the paper's domain classifier for its larger experiments: two hidden layers of 1024
        self.domain_classifier = nn.Sequential(
            nn.Linear(feature_dim, domain_hidden), nn.ReLU(inplace=True),
            nn.Linear(domain_hidden, domain_hidden), nn.ReLU(inplace=True),
            nn.Linear(domain_hidden, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """G_f: the input of the net's last linear layer."""
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_train(self, x_source: torch.Tensor, x_target: torch.Tensor | None):
        """(source label logits, domain logits of [source; target] or None). The two domains go
        through the feature extractor as one batch, so its BatchNorm sees both."""
        if x_target is None:
            return self.net.get_classifier()(self.features(x_source)), None
        features = self.features(torch.cat([x_source, x_target]))
        class_logits = self.net.get_classifier()(features[: len(x_source)])
        domain_logits = self.domain_classifier(self.grl(features)).squeeze(-1)
        return class_logits, domain_logits


class DANNTask(ClassificationTask):
    """Training batches ``(x_source, y_source, x_target)``: label cross-entropy on the source plus
    the domain classifier's binary cross-entropy on both (``adapt=False``: the source-only
    baseline, which ignores the target images). Evaluation: accuracy on labelled ``(x, y)``."""

    def __init__(self, adapt: bool = True, domain_weight: float = 1.0):
        super().__init__()
        self.adapt, self.domain_weight = adapt, domain_weight

    def training_step(self, model, batch):
        x_source, y_source, x_target = batch[0], batch[1], batch[2]
        dann = model.module if hasattr(model, "module") else model  # DDP wraps it
        class_logits, domain_logits = dann.forward_train(x_source, x_target if self.adapt else None)
        loss = F.cross_entropy(class_logits, y_source)
        if domain_logits is not None:
            domains = torch.cat([torch.zeros(len(x_source)), torch.ones(len(x_target))]).to(domain_logits)
            domain_loss = F.binary_cross_entropy_with_logits(domain_logits.float(), domains.float())
            loss = loss + self.domain_weight * domain_loss
        return loss


class DANNSchedule(Callback):
    """Sets the gradient-reversal factor to lambda_p before every optimizer step (p = steps taken
    / total steps; a resumed run continues from its step)."""

    def __init__(self, gamma: float = 10.0):
        self.gamma = gamma

    def _set(self, trainer) -> None:
        model = trainer.model
        model.grl.lambd = grl_lambda(min(trainer.state.step / trainer.total_steps, 1.0), self.gamma)

    def on_train_start(self, trainer) -> None:
        self._set(trainer)

    def on_step_end(self, trainer, loss) -> None:
        self._set(trainer)


class DomainPairs(Dataset):
    """Item i: ``(source image, source label, target image)``; the target images are drawn in a
    fixed random order (``seed``) and cycled, their labels never read."""

    def __init__(self, source: Dataset, target_images: torch.Tensor, seed: int = 0):
        if len(target_images) == 0:
            raise InvalidConfigError("the target domain has no images")
        self.source, self.target = source, target_images
        self.order = torch.randperm(len(target_images), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):
        x, y = self.source[i][0], self.source[i][1]
        return x, y, self.target[self.order[i % len(self.order)]]


# ------------------------------------------------------------------------------------------------
# The shifted target domain
# ------------------------------------------------------------------------------------------------

SHIFTS = ("invert", "rotate", "invert_noise")


def shift_images(pixels: torch.Tensor, kind: str, seed: int = 0, noise: float = 0.2,
                 degrees: float = 45.0) -> torch.Tensor:
    """A shifted domain of ``(N, C, H, W)`` images with pixels in [0, 1]:

    - ``invert``: ``1 - x`` (white digits on black become black on white);
    - ``rotate``: every image rotated by ``degrees`` (one angle for the domain);
    - ``invert_noise``: inverted, plus Gaussian pixel noise of std ``noise`` (fixed by ``seed``), clipped.
    """
    if kind == "invert":
        return 1.0 - pixels
    if kind == "rotate":
        from torchvision.transforms.v2 import functional as TF

        return TF.rotate(pixels, degrees, interpolation=TF.InterpolationMode.BILINEAR)
    if kind == "invert_noise":
        g = torch.Generator().manual_seed(seed)
        return (1.0 - pixels + noise * torch.randn(pixels.shape, generator=g)).clamp(0.0, 1.0)
    raise InvalidConfigError(f"--shift must be one of {SHIFTS}, got {kind!r}")
