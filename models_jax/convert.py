"""Weights between Flax NNX detectors and the framework-neutral canonical form.

The canonical form is a flat ``{name: float32 ndarray}`` with PyTorch's ``state_dict`` names and
layouts (``encoder.blocks.0.qkv.weight`` of shape (out, in), ``rnn.weight_ih_l0`` ...), which is
what ``checkpoint.safetensors`` holds whichever framework trained the model. The key map is
built per model from explicit rules, one per layer type, and checked to cover every parameter
in both directions, so a model change that the map misses fails loudly instead of loading
half the weights.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax.numpy as jnp
import numpy as np
from flax import nnx

from models_jax.layers import Embedding
from models_jax.lstm import LSTMLayer

Path = tuple
# Flax attribute -> (torch attribute, transposed?) for each layer type.
LINEAR = {"kernel": ("weight", True), "bias": ("bias", False)}
LAYER_NORM = {"scale": ("weight", False), "bias": ("bias", False)}
EMBEDDING = {"embedding": ("weight", False)}
RECURRENT = {  # per layer i of a stacked RNN; torch names them on the stack
    "w_ih": ("weight_ih_l{i}", True),
    "w_hh": ("weight_hh_l{i}", True),
    "b_ih": ("bias_ih_l{i}", False),
    "b_hh": ("bias_hh_l{i}", False),
}


class WeightMismatchError(ValueError):
    """Canonical weights that do not fit the model (missing, unexpected or mis-shaped)."""


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _module_rules(path: Path, node) -> Iterator[tuple[str, Path, bool]]:
    if isinstance(node, nnx.Linear):
        rules, prefix = LINEAR, _dotted(path)
    elif isinstance(node, nnx.LayerNorm):
        rules, prefix = LAYER_NORM, _dotted(path)
    elif isinstance(node, Embedding):
        rules, prefix = EMBEDDING, _dotted(path)
    elif isinstance(node, LSTMLayer):
        layer = path[-1]
        rules = {k: (name.format(i=layer), t) for k, (name, t) in RECURRENT.items()}
        prefix = _dotted(path[:-1])
    else:
        return
    for attr, (name, transposed) in rules.items():
        yield f"{prefix}.{name}", (*path, attr), transposed


def key_map(model: nnx.Module) -> dict[str, tuple[Path, bool]]:
    """canonical name -> (path of the NNX parameter, stored transposed?)."""
    mapping: dict[str, tuple[Path, bool]] = {}
    for path, node in nnx.iter_graph(model):
        for name, param_path, transposed in _module_rules(path, node):
            mapping[name] = (param_path, transposed)
    covered = {p for p, _ in mapping.values()}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Param) and path not in covered:
            mapping[_dotted(path)] = (path, False)  # free parameters: mask_vector, ...
    return mapping


def _params(model: nnx.Module) -> dict[Path, nnx.Param]:
    return {p: n for p, n in nnx.iter_graph(model) if isinstance(n, nnx.Param)}


def to_canonical(model: nnx.Module) -> dict[str, np.ndarray]:
    params = _params(model)
    out = {}
    for name, (path, transposed) in key_map(model).items():
        value = np.asarray(params[path][...], dtype=np.float32)
        out[name] = np.ascontiguousarray(value.T if transposed else value)
    return out


def load_canonical(model: nnx.Module, weights: dict[str, np.ndarray]) -> None:
    """Set every parameter of ``model`` from ``weights``; raises WeightMismatchError on any gap."""
    mapping = key_map(model)
    missing, unexpected = sorted(set(mapping) - set(weights)), sorted(set(weights) - set(mapping))
    if missing or unexpected:
        raise WeightMismatchError(
            f"weights do not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    params = _params(model)
    for name, (path, transposed) in mapping.items():
        value = np.asarray(weights[name], dtype=np.float32)
        value = value.T if transposed else value
        if value.shape != params[path][...].shape:
            raise WeightMismatchError(
                f"{name}: shape {value.shape} does not fit {params[path][...].shape}"
            )
        params[path].set_value(jnp.asarray(value))
