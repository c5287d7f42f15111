"""Building blocks shared by two or more domains (vision, nlp, audio, generative, ...)."""

from .activations import (
    GradientReversal,
    GradientReversalFunction,
    MemoryEfficientSwish,
    SwishFunction,
    grad_reverse,
    swish,
)
from .attention import MultiHeadAttention
from .conv import ConvNormAct
from .drop import DropPath, drop_path
from .init import init_weights_kaiming, init_weights_vit_style, trunc_normal_
from .mlp import Mlp
from .norm import LayerNorm, LayerNorm2d, RMSNorm
from .pos_embed import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    resample_abs_pos_embed,
    sinusoidal_position_encoding,
)
from .se import SqueezeExcitation

__all__ = [
    # attention / MLP
    "MultiHeadAttention",
    "Mlp",
    # normalization
    "LayerNorm",
    "LayerNorm2d",
    "RMSNorm",
    # regularization
    "drop_path",
    "DropPath",
    # position information
    "sinusoidal_position_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "resample_abs_pos_embed",
    # convolutional blocks
    "ConvNormAct",
    "SqueezeExcitation",
    # initialisation
    "trunc_normal_",
    "init_weights_vit_style",
    "init_weights_kaiming",
    # activations
    "SwishFunction",
    "swish",
    "MemoryEfficientSwish",
    "GradientReversalFunction",
    "grad_reverse",
    "GradientReversal",
]
