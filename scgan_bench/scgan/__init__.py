"""SCGAN (Semi-Cycled GANs, arXiv 2205.03777): networks, variants, trainer, SR method."""
