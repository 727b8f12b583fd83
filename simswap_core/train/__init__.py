"""SimSwap training: losses (the Weak Feature Matching loss and the rest), the two official training paths, data,
the trainer, checkpoints and sample grids. Nothing here is imported by ``import simswap_core``.

Modules: ``losses`` (pure loss functions), ``paths`` (PROJECTED / MULTISCALE: model space, discriminator, optimisers,
the losses of one G and one D update), ``parity`` (the interface the training goldens' check script calls),
``data`` (identity-folder datasets and loaders), ``trainer``, ``checkpointing``, ``samples``.
"""
