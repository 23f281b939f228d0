"""latent-digits-lab: how architecture and training choices change what a network learns on MNIST."""

__version__ = "0.1.0"
