"""How a run is computed, as opposed to what it is: the device, the precision, and the environment record.

None of this is part of a run's config or id; metrics.json records it beside the numbers.
"""

import contextlib
import platform
import subprocess
from pathlib import Path

import torch

from lab.config import PRECISIONS, ConfigError
from lab.paths import ROOT


def pick_device(name: str | None = None) -> torch.device:
    """The given device, else cuda, else mps, else cpu."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 matmuls and convs in hardware (emulated bf16 would be slower than fp32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)  # Ampere or newer
        except TypeError:  # older torch: no emulation to rule out
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_flag("_is_avx512_bf16_supported") or cpu_flag("_is_amx_tile_supported")
    return False


def cpu_flag(name: str) -> bool:
    """One of torch.cpu's feature probes (AVX-512 BF16: AMD Zen 4, Intel Cooper Lake; AMX: Intel Sapphire Rapids)."""
    return bool(getattr(torch.cpu, name, lambda: False)())


def bf16_pays(device: torch.device, task: str) -> bool:
    """What --precision auto picks: bf16 autocast on hardware with native bf16, except autoencoders on a CPU.

    Measured, and CPU-dependent: on the 2-core AMD EPYC (AVX-512 BF16) bf16 trained fast_cnn 1.3-1.7x and simple_cnn
    2.2-2.4x faster than fp32, and conv_ae slower; on the 2-core Intel Xeon (also AVX-512 BF16, no AMX) it trained
    fast_cnn 1.2x and simple_cnn 1.45x slower. Both CPUs report the same features, so auto cannot tell them apart:
    it keeps bf16, and `--precision fp32` is the faster choice on that Xeon (docs/benchmark.md).
    """
    if not native_bf16(device):
        return False
    return not (task == "autoencoder" and device.type == "cpu")


def autocast_dtype(precision: str, device: torch.device, task: str = "classifier") -> torch.dtype | None:
    """The dtype a model's convs and matmuls autocast to for a precision setting, or None for plain float32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "bf16" or (precision == "auto" and bf16_pays(device, task)):
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """"bf16" or "fp32": what a run computed in, for its metrics."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast to dtype on the device, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def environment(device: torch.device) -> dict:
    """What produced a result: versions, device (with the GPU's name), threads, the CPU and its features, git commit.

    Numbers repeat bit for bit only on the same CPU model and features, thread count and precision: float kernels
    (oneDNN's AVX-512 BF16 on AMD, AMX on Intel) round differently, so the record says which ones ran.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "torch_version": torch.__version__,
        "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "git_commit": commit,
    }


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# the instruction-set features that choose torch's CPU kernels, and so a result's last digits
KERNEL_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve")


def cpu_features() -> str:
    """The KERNEL_FEATURES this CPU has, space-separated (Linux /proc/cpuinfo), else ""."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    return " ".join(f for f in KERNEL_FEATURES if f in flags)
