"""Training of DM-Codec (``dmcodec train``): GAN losses, LM / SM distillation, discriminators, the loop.

Inference code never imports this package; its extra dependencies (accelerate, tensorboard, matplotlib)
are the ``train`` extra of the package and are imported only where they are used.
"""
