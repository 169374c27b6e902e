"""Mixed precision: which stages run their matmuls in bf16, and the one autocast context they use.

`precision` on every stage config is auto | fp32 | bf16:
  fp32  everything in fp32.
  bf16  the matmul-heavy forwards and backwards under torch.autocast(dtype=bfloat16), on a CPU or a CUDA
        device. Weights, gradients and the optimizer state stay fp32 (mixed precision, not a bf16 model);
        the code casts logits to fp32 before every log-softmax, so log-probs, KL, advantages and losses
        are fp32 too. On a CPU without native bf16 (no AVX512-BF16/AMX) bf16 still runs, correctly but
        emulated and much slower: it is honoured with a warning. A device that cannot run bf16 autocast
        at all (a CUDA GPU older than Ampere, an Apple GPU) is a ConfigError that says to use auto or fp32.
  auto  bf16 where it is faster, fp32 elsewhere:
        - CUDA: bf16 when torch.cuda.is_bf16_supported().
        - CPU: bf16 when a one-off micro-benchmark says its bf16 matmuls are measurably faster than fp32
          (a 512x512 matmul, median of 3 reps each, bf16 at least BF16_MIN_SPEEDUP times faster). The
          verdict is cached per machine in ~/.cache/rlhf-lab/precision.json, keyed by the CPU model, the
          torch version and the thread count; RLHF_LAB_PRECISION_CACHE names another file.
        - anything else (mps): fp32.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch

from core.config import PRECISIONS, ConfigError

CACHE_ENV = "RLHF_LAB_PRECISION_CACHE"
BF16_MIN_SPEEDUP = 1.3
"""bf16 must be at least this much faster than fp32 on the micro-benchmark for auto to choose it."""
BENCH_N = 512
BENCH_REPS = 3


def cache_path() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rlhf-lab" / "precision.json")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_key() -> str:
    return f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def cpu_matmul_speedup(n: int = BENCH_N, reps: int = BENCH_REPS) -> float:
    """fp32 time / bf16 time of an n x n matmul on this CPU (> 1: bf16 is faster).

    Each dtype gets one warm-up (oneDNN builds its kernel on first use) and `reps` timed runs; bf16 stops
    early once one run is already slower than fp32's median (no gain possible: on a CPU without native
    bf16 a single run is tens of times slower, and more reps would only waste the student's time)."""
    def one(a, b):
        t = time.perf_counter()
        torch.mm(a, b)
        return time.perf_counter() - t

    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    one(a32, b32)
    fp32 = statistics.median(one(a32, b32) for _ in range(reps))
    one(a16, b16)
    times = []
    for _ in range(reps):
        times.append(one(a16, b16))
        if times[-1] > fp32:
            break
    return fp32 / statistics.median(times)


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cpu_bf16_is_faster() -> bool:
    """The cached verdict for this machine, measured (cpu_matmul_speedup) and stored the first time."""
    key = machine_key()
    entry = _read_cache().get(key)
    if isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float)):
        return entry["speedup"] >= BF16_MIN_SPEEDUP
    speedup = float(cpu_matmul_speedup())
    data = _read_cache()
    data[key] = {"speedup": round(speedup, 3), "n": BENCH_N, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                           time.gmtime())}
    try:  # a read-only home must not stop training: the verdict is then measured again next time
        path = cache_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass
    return speedup >= BF16_MIN_SPEEDUP


def resolve_precision(precision: str, device) -> str:
    """"fp32" or "bf16": what a stage asked for (auto | fp32 | bf16) on this device (see the module doc)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32":
        return "fp32"
    if kind == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise ConfigError("precision 'bf16' was asked for but this CUDA GPU has no bf16; "
                              "use --precision auto or fp32")
        return "bf16" if supported else "fp32"
    if kind == "cpu":
        if precision == "auto":
            return "bf16" if cpu_bf16_is_faster() else "fp32"
        if not cpu_bf16_is_faster():
            warnings.warn("precision 'bf16' on a CPU without fast bf16 matmuls: it runs, emulated and slower "
                          "than fp32 (use --precision auto to pick the faster one)", stacklevel=2)
        return "bf16"
    if precision == "bf16":
        raise ConfigError(f"precision 'bf16' is supported on cpu and cuda only, not {kind!r}; "
                          f"use --precision auto or fp32")
    return "fp32"


def autocast(device, precision: str):
    """bf16 autocast on a CPU or CUDA device when `precision` (resolved) is "bf16"; a no-op context otherwise.

    Autocast runs matmuls (linear, bmm, attention) in bf16 and keeps reductions and losses in fp32; the
    parameters themselves stay fp32 and receive fp32 gradients."""
    kind = torch.device(device).type
    if precision == "bf16" and kind in ("cpu", "cuda"):
        return torch.autocast(kind, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def record(run, asked: str, used: str) -> None:
    """Write the precision in use beside the stage config in the run's config.json
    ({"precision": {"asked": "auto", "used": "fp32"}}), where the pages and `rlhf-lab` read it."""
    if run is None:
        return
    from core.runs import atomic_write_json

    info = run.info()
    info["precision"] = {"asked": asked, "used": used}
    atomic_write_json(run.path / "config.json", info)


def setup(cfg, device, run=None) -> str:
    """A stage's precision, resolved on its device and recorded in its run: "fp32" or "bf16"."""
    used = resolve_precision(cfg.precision, device)
    record(run, cfg.precision, used)
    return used


def used_by(run_info: dict) -> str | None:
    """The precision a run recorded in its config.json ("fp32"/"bf16"), None for a run from before it."""
    entry = run_info.get("precision") if isinstance(run_info, dict) else None
    return entry.get("used") if isinstance(entry, dict) else None


def caption(run_dir) -> str:
    """One line for a stage page: the precision a run trains in, e.g. "Precision: fp32 (auto on this machine)"."""
    from core.runs import read_json

    try:
        info = read_json(Path(run_dir) / "config.json", {}) or {}
    except Exception:  # a page must not fail on a corrupt file: the run's own views report that
        info = {}
    used, asked = used_by(info), (info.get("config") or {}).get("precision") if isinstance(info, dict) else None
    if used:
        how = "auto: bf16 is faster here" if asked == "auto" and used == "bf16" else (
            "auto: bf16 is not faster on this device" if asked == "auto" else "as asked")
        return f"Precision: {used} ({how}; weights, optimizer state and losses in fp32)."
    if asked:
        return f"Precision: {asked} (decided when the run starts)."
    return "Precision: fp32 (recorded before runs chose their precision)."
