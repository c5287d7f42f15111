"""Vision models. Importing the package registers them."""

from . import mobilenetv3, resnet, vit  # noqa: F401  (importing registers the families)
from .mobilenetv3 import MobileNetV3
from .resnet import ResNet
from .vit import VisionTransformer
