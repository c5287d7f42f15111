"""Building blocks that two or more domains use (or that this round's domain issues build on).

Each block here names its users; one that no domain uses leaves.

* attention: the functional core (mask merging, the fully-masked-row guard, SDPA) that ViT, BERT,
  GPT-2 and wav2vec 2.0 each wrap in a module with their own checkpoint's parameter names.
* positions: the sinusoidal table (Transformer positions, diffusion timesteps); ViT's position
  embedding resampling.
* ``Mlp`` (timm's ``fc1`` / ``fc2``), ``DropPath``, ViT-style init: ViT's encoder blocks.
* ``ConvNormAct``, ``SqueezeExcitation``: MobileNetV3's units, in torchvision's key layout.
* ``checkpoint_seq``: gradient checkpointing over a sequence of blocks, for every model that offers it.
* gradient reversal: domain-adversarial training.
* ``cpu_dropout`` / ``CpuDropout`` / ``use_cpu_dropout``: dropout with a cheaper mask sampler on the
  CPU, the G2P recipe's ``--cpu-dropout``.
"""

from .attention import attention, merge_heads, merge_masks, split_heads
from .conv import ConvNormAct
from .drop import CpuDropout, DropPath, cpu_dropout, drop_path, use_cpu_dropout
from .grad_checkpoint import checkpoint_seq
from .grad_reverse import GradientReversal, GradientReversalFunction, grad_reverse
from .init import init_weights_vit_style, trunc_normal_
from .mlp import Mlp
from .pos_embed import SinusoidalPositionalEncoding, resample_abs_pos_embed, sinusoidal_position_encoding
from .se import SqueezeExcitation

__all__ = [
    # attention / MLP
    "attention",
    "merge_masks",
    "split_heads",
    "merge_heads",
    "Mlp",
    # regularization
    "drop_path",
    "DropPath",
    "cpu_dropout",
    "CpuDropout",
    "use_cpu_dropout",
    # position information
    "sinusoidal_position_encoding",
    "SinusoidalPositionalEncoding",
    "resample_abs_pos_embed",
    # convolutional blocks
    "ConvNormAct",
    "SqueezeExcitation",
    # initialisation
    "trunc_normal_",
    "init_weights_vit_style",
    # training helpers
    "checkpoint_seq",
    "GradientReversalFunction",
    "grad_reverse",
    "GradientReversal",
]
