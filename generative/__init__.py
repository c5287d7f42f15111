"""Generative domain: DCGAN, WGAN-GP, VAE and DDPM/DDIM, with their recipes.

Importing the package registers ``dcgan_generator``, ``dcgan_discriminator``, ``wgan_gp_critic``,
``vae_conv``, ``vae_mlp``, ``unet2d_ddpm_cifar10`` and ``unet2d_small``. The U-Net has diffusers'
``UNet2DModel`` layout and the schedulers step like diffusers' ``DDPMScheduler`` / ``DDIMScheduler``;
nothing here imports diffusers, which is the reference the tests compare against.
"""

from . import unet  # noqa: F401  (register the models)
from .unet import UNet2D, config_from_diffusers

__all__ = ["UNet2D", "config_from_diffusers"]
