"""GANs: the pretrained DCGAN face generator (faces.py), and toy GANs on 2-D data trained live (toy_training.py)."""
