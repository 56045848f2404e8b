"""Detectors behind one NumPy protocol: the registry, the baselines, PCA scoring and the
framework adapters (the only harness modules that import torch or jax)."""
