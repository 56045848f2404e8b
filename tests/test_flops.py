"""Model-FLOP counts (benchmark.timing.flops) against PyTorch's own operator-level counter, and the
roofline table built from them."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from benchmark.detectors.registry import speed_probe
from benchmark.speed.table import PRESETS, build, flop_sizes, roofline
from benchmark.timing.flops import TRAIN_STEP_FACTOR, Sizes, achieved, forward_flops

# PyTorch's counter has no formula for the CPU attention kernel; the one it uses elsewhere.
CPU_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: (
        lambda q, k, v, *args, **kwargs: sdpa_flop_count(q, k, v)
    )
}


def counted_per_sequence(net, inputs, rows: int) -> float:
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as c:
        net(*inputs)
    return c.get_total_flops() / rows


# The LSTM is left out: PyTorch runs it as one fused CPU operator its counter cannot see
# into; it shares the GRU's recurrent count with four gates for three.
@pytest.mark.parametrize("model", ["gru", "transformer", "multimodal"])
def test_model_flops_equal_pytorchs_count_of_the_same_forward_pass(model):
    config, detector, data = build(model, "torch", PRESETS["quick"])
    rows = np.arange(8)
    detector.model.eval()
    mine = counted_per_sequence(detector.model, (detector.batch(data, rows),), len(rows))
    assert mine == forward_flops(flop_sizes(config, model), "detector")
    reference = speed_probe(detector, data, "torch", "reference")
    item, mask, _ = reference._inputs(rows)
    reference.net.train()  # eval mode takes a fused encoder kernel the counter cannot see into
    plain = counted_per_sequence(reference.net, (item, mask), len(rows))
    assert plain == forward_flops(flop_sizes(config, model), "reference")


def test_flops_grow_as_the_architecture_says():
    base = Sizes(
        model="transformer", embed_dim=64, hidden_dim=64, num_layers=2, ff_dim=256, length=50
    )
    longer = Sizes(**{**base.__dict__, "length": 100})
    # Projections grow linearly with length, attention contractions quadratically.
    ratio = forward_flops(longer) / forward_flops(base)
    assert 2.0 < ratio < 4.0
    lstm = Sizes(**{**base.__dict__, "model": "lstm"})
    gru = Sizes(**{**base.__dict__, "model": "gru"})
    heads = 2.0 * 50 * 64 + 2.0 * 2 * 64
    assert (forward_flops(lstm) - heads) / (forward_flops(gru) - heads) == pytest.approx(4 / 3)
    assert achieved(1000.0, 2e6) == 2e9
    assert achieved(None, 2e6) is None


def test_roofline_rows_are_throughput_times_model_flops_over_the_ceiling():
    ceilings = {
        "matmul": {"per_s": 100e9, "n": 2048, "dtype": "float32"},
        "copy": {"per_s": 15e9, "bytes": 2**28},
    }
    forward = 5e6
    entry = {
        "model": "gru",
        "framework": "torch",
        "implementation": "detector",
        "flops_per_sequence": {"forward": forward, "train_step": TRAIN_STEP_FACTOR * forward},
        "timing": {
            "inference": {"batch_256": {"seq_per_s": 4000.0, "first_call_s": 0.1}},
            "train": {"seq_per_s": 1000.0},
            "latency_ms": {},
            "peak_memory_mb": 1.0,
        },
    }
    text = roofline([entry], ceilings)
    assert "100.0 GFLOP/s" in text
    assert "15.0 GB/s" in text
    row = next(r for r in text.splitlines() if r.startswith("| gru | torch"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    # 4000 seq/s x 5 MFLOP = 20 GFLOP/s = 20% of 100; training 1000 x 15 MFLOP = 15 GFLOP/s.
    assert cells[2:] == ["5", "20", "20", "15", "15"]
    unmeasured = roofline([entry], None)  # a job without ceilings: achieved figures only
    assert "Ceilings not measured" in unmeasured
    assert "| gru | torch | 5 | 20 | - | 15 | - |" in unmeasured
