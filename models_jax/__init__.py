"""JAX/Flax twins of :mod:`models_torch`: same file names, class names and configs.

The two frameworks meet only through NumPy arrays and weights; parity tests compare them.
"""
