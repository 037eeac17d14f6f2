"""Variational autoencoders: the small convolutional VAE trained here, diffusers' AutoencoderKL, and a 2-D-latent
VAE on the digits trained live (live_training.py)."""
