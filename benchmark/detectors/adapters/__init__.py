"""Framework adapters: the only harness modules that import torch or jax. Each turns NumPy
arrays into its framework's tensors, trains and scores a model, and hands back NumPy."""
