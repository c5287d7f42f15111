"""Generative domain: DCGAN, WGAN-GP, VAE and DDPM/DDIM, with their recipes.

Importing the package registers ``dcgan_generator``, ``dcgan_discriminator``, ``wgan_gp_critic``,
``vae_conv``, ``vae_mlp``, ``unet2d_ddpm_cifar10`` and ``unet2d_small``. The U-Net has diffusers'
``UNet2DModel`` layout and the schedulers step like diffusers' ``DDPMScheduler`` / ``DDIMScheduler``;
nothing here imports diffusers, which is the reference the tests compare against.
"""

from . import dcgan, unet, vae, wgan_gp  # noqa: F401  (register the models)
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .diffusion import DDIMSampler, DDPMSampler, NoiseSchedule, ScheduleConfig
from .unet import UNet2D, config_from_diffusers
from .vae import VAE
from .wgan_gp import gradient_penalty

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "UNet2D", "VAE", "NoiseSchedule", "ScheduleConfig", "DDPMSampler",
           "DDIMSampler", "config_from_diffusers", "gradient_penalty"]
