"""GANs: the pretrained DCGAN face generator."""
