"""Variational autoencoders: the small convolutional VAE trained here, and diffusers' AutoencoderKL."""
