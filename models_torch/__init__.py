"""PyTorch detectors: one file per model (lstm.py, gru.py, transformer.py, multimodal.py).

Contract shared with :mod:`models_jax` (same file and class names): a model takes the padded
arrays of :class:`datasets.features.SequenceArrays` and imports nothing of the harness.
"""
