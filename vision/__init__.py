"""Vision models. Importing the package registers them."""

from . import resnet  # noqa: F401  (registers the ResNet family)
from .resnet import ResNet
