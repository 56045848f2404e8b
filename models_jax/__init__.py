"""Flax NNX detectors: one file per model, same file and class names as :mod:`models_torch`.

A model takes the padded arrays of :class:`datasets.features.SequenceArrays` as a dict of JAX
arrays, returns the same output names as its PyTorch twin, and imports nothing of the harness.
Constructors: ``Model(cfg: DetectorConfig, rngs: nnx.Rngs, speed: Speed = DEFAULT_SPEED)``, where
``models_jax.layers.Speed`` holds implementation choices that change speed, not results.
"""
