"""The timing probe of a PyTorch detector (``benchmark.timing.protocol.SpeedProbe``).

Inference and training workloads run on batches already on the device and return device
tensors without waiting; ``sync`` is ``torch.cuda.synchronize`` (a no-op on CPU, where PyTorch
runs synchronously). Latency requests go from NumPy rows to NumPy scores.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from benchmark.detectors.adapters.common import reference_sizes
from benchmark.detectors.adapters.torch_adapter import TorchDetector, pick_device
from benchmark.timing.protocol import TimingProtocol, Workload, as_reference, work_rate
from datasets.features import SequenceArrays
from models_torch import reference

RECURRENT = ("lstm", "gru")
MB = 2**20


class DeviceProbe:
    """Rows, synchronisation and CUDA memory counters, shared by both probes."""

    def __init__(self, device: torch.device, data: SequenceArrays) -> None:
        self.device = device
        self.data = data
        self.cuda = device.type == "cuda"

    def _rows(self, batch_size: int) -> np.ndarray:
        return np.arange(batch_size) % len(self.data)

    def _events(self, rows: np.ndarray) -> int:
        return int(self.data.length[rows].sum())

    def sync(self, _handle=None) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_memory(self) -> None:
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)

    def device_memory_mb(self) -> dict[str, float]:
        if not self.cuda:
            return {}
        return {
            "device_peak_allocated": torch.cuda.max_memory_allocated(self.device) / MB,
            "device_peak_reserved": torch.cuda.max_memory_reserved(self.device) / MB,
        }


class DetectorProbe(DeviceProbe):
    def __init__(self, detector: TorchDetector, data: SequenceArrays) -> None:
        super().__init__(detector.device, data)
        self.detector = detector
        self._saved: dict[str, torch.Tensor] | None = None

    def inference(self, batch_size: int) -> Workload:
        self.detector.model.eval()
        rows = self._rows(batch_size)
        batch = self.detector.batch(self.data, rows)
        return Workload(
            lambda: self.detector.score_batch(batch), self.sync, batch_size, self._events(rows)
        )

    def request(self, batch_size: int) -> Callable[[], np.ndarray]:
        self.detector.model.eval()
        rows = self._rows(batch_size)

        def request() -> np.ndarray:
            scores, _, _ = self.detector.score_batch(self.detector.batch(self.data, rows))
            return scores.float().cpu().numpy()

        return request

    def training(self, batch_size: int) -> Workload:
        d = self.detector
        self._saved = {k: v.detach().clone() for k, v in d.model.state_dict().items()}
        d.model.train()
        opt, sched = d.optimizer(total_steps=10**9)  # the schedule's warm-up, then ~constant
        generator = torch.Generator().manual_seed(d.spec.seed)
        rows = self._rows(batch_size)
        batch = d.batch(self.data, rows)
        return Workload(
            lambda: d.train_step(batch, opt, sched, generator),
            self.sync,
            batch_size,
            self._events(rows),
        )

    def restore(self) -> None:
        if self._saved is not None:
            self.detector.model.load_state_dict(self._saved)
            self._saved = None
        self.detector.model.eval()

    def environment(self) -> dict:
        return environment(self.detector)


class ReferenceProbe(DeviceProbe):
    """The plain reference model (``models_torch.reference``) at a detector's sizes."""

    def __init__(self, detector: TorchDetector, data: SequenceArrays) -> None:
        super().__init__(detector.device, data)
        self.detector = detector
        cfg, model = detector.cfg, detector.spec.model.name.value
        torch.manual_seed(detector.spec.seed)
        name, sizes = reference_sizes(cfg, model)
        self.net = getattr(reference, name)(**sizes).to(self.device)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.detector.bf16)

    def _inputs(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.data
        return (
            torch.as_tensor(d.item[rows], dtype=torch.long, device=self.device),
            torch.as_tensor(d.mask[rows], device=self.device),
            torch.as_tensor(d.label[rows], dtype=torch.float32, device=self.device),
        )

    @torch.no_grad()
    def _forward(self, item: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.net(item, mask)

    def inference(self, batch_size: int) -> Workload:
        self.net.eval()
        rows = self._rows(batch_size)
        item, mask, _ = self._inputs(rows)
        return Workload(
            lambda: self._forward(item, mask), self.sync, batch_size, self._events(rows)
        )

    def request(self, batch_size: int) -> Callable[[], np.ndarray]:
        self.net.eval()
        rows = self._rows(batch_size)

        def request() -> np.ndarray:
            item, mask, _ = self._inputs(rows)
            return self._forward(item, mask).float().cpu().numpy()

        return request

    def training(self, batch_size: int) -> Workload:
        self.net.train()
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        rows = self._rows(batch_size)
        item, mask, label = self._inputs(rows)

        def step() -> torch.Tensor:
            with self._autocast():
                logits = self.net(item, mask)
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        return Workload(step, self.sync, batch_size, self._events(rows))

    def restore(self) -> None:
        self.net.eval()

    def environment(self) -> dict:
        return as_reference(environment(self.detector), "models_torch.reference")


def environment(detector: TorchDetector) -> dict:
    """Device, versions, precision settings and the fast paths in force."""
    f = detector.spec.framework
    cuda = detector.device.type == "cuda"
    model = detector.spec.model.name.value
    out = {
        "framework": "torch",
        "version": torch.__version__,
        "device": torch.cuda.get_device_name(detector.device) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "precision": {
            "compute": "bf16 autocast (heads fp32)" if detector.bf16 else "fp32",
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
        "fast_paths": {
            "compile": f.compile,
            "compile_mode": f.compile_mode if f.compile else None,
            "fused_optimizer": f.fused_optimizer,
            "fused_dropout_masks": f.fused_dropout and detector.device.type == "cpu",
            "length_buckets": list(detector.buckets) if detector.buckets else None,
            "attention": None if model in RECURRENT else f.attention,
            "recurrence": "nn.LSTM/nn.GRU (cuDNN on GPU) on padded input, no packing"
            if model in RECURRENT
            else None,
        },
    }
    if cuda and model not in RECURRENT:
        backends = torch.backends.cuda
        out["sdpa_backends_enabled"] = {
            "flash": backends.flash_sdp_enabled(),
            "memory_efficient": backends.mem_efficient_sdp_enabled(),
            "cudnn": backends.cudnn_sdp_enabled(),
            "math": backends.math_sdp_enabled(),
        }
    return out


# --- the device's ceilings ---------------------------------------------------------------

# Large enough to saturate the device, small enough for seconds per window on 2 CPU cores.
MATMUL_N = {"cuda": 8192, "cpu": 2048}
COPY_BYTES = {"cuda": 2**30, "cpu": 2**28}


def ceilings(device_name: str, bf16: bool, tf32: bool, protocol: TimingProtocol) -> dict:
    """The device's measured ceilings under the timing protocol: the FLOP/s of a large
    square matrix product at the run's compute precision, and the bytes/s of a large
    device-to-device copy (each byte read once and written once)."""
    device = pick_device(device_name)
    kind = device.type
    sync = (lambda _: torch.cuda.synchronize(device)) if kind == "cuda" else (lambda _: None)
    if kind == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    dtype = torch.bfloat16 if bf16 and kind == "cuda" else torch.float32
    n = MATMUL_N[kind]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    product = torch.empty(n, n, device=device, dtype=dtype)
    matmul = Workload(lambda: torch.matmul(a, b, out=product), sync, 1, 0)
    source = torch.ones(COPY_BYTES[kind] // 4, device=device)
    target = torch.empty_like(source)
    copy = Workload(lambda: target.copy_(source), sync, 1, 0)
    return {
        "device": torch.cuda.get_device_name(device) if kind == "cuda" else "cpu",
        "matmul": {"n": n, "dtype": str(dtype).removeprefix("torch.")}
        | work_rate(matmul, 2.0 * n**3, protocol),
        "copy": {"bytes": source.numel() * 4} | work_rate(copy, 2.0 * source.numel() * 4, protocol),
    }
