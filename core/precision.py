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
        - CPU: bf16 when the CPU has native bf16 matmuls. On x86 its own flags decide (AVX512-BF16 or AMX-BF16,
          as torch's cpuinfo reads them): the same answer for every process of a run (ranks, workers) and every
          run of a command, however loaded the machine is. Where the flags cannot tell (ARM, where oneDNN's bf16
          speed depends on the core, not on one flag) a one-off micro-benchmark decides: 512x512 matmuls on one
          thread, fp32 and bf16 interleaved (a load that slows one slows the other), median of 5 each, bf16 at
          least BF16_MIN_SPEEDUP times faster. That verdict is measured once per machine under a file lock and
          cached in ~/.cache/rlhf-lab/precision.json, keyed by the CPU model and torch version only (not the
          thread count, which differs between ranks); RLHF_LAB_PRECISION_CACHE names another file.
        - RLHF_LAB_CPU_BF16=1 (or 0) overrides the CPU verdict: auto then resolves as on a CPU with (without)
          fast bf16. The test suite's bf16 pass (.ci/run) uses it to run on any machine as a bf16 one would.
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
from filelock import FileLock, Timeout

from core.config import PRECISIONS, ConfigError

CACHE_ENV = "RLHF_LAB_PRECISION_CACHE"
FORCE_ENV = "RLHF_LAB_CPU_BF16"
BF16_MIN_SPEEDUP = 1.3
"""bf16 must be at least this much faster than fp32 on the micro-benchmark for auto to choose it."""
BENCH_N = 512
BENCH_REPS = 5


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
    return f"{cpu_model()} | torch {torch.__version__}"


def cpu_bf16_flags() -> bool | None:
    """Whether this CPU's own flags say it has native bf16 matmuls; None where the flags cannot tell (not x86)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return None
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(c) for c in checks):
        return any(c() for c in checks)
    try:  # an older torch without those helpers: the kernel's flags on Linux
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_matmul_speedup(n: int = BENCH_N, reps: int = BENCH_REPS) -> float:
    """fp32 time / bf16 time of an n x n matmul on this CPU, on one thread (> 1: bf16 is faster).

    One thread, so the verdict does not depend on how many threads the measuring process had; fp32 and bf16
    runs alternate, so a load that comes and goes slows both alike. Each dtype gets one warm-up (oneDNN builds
    its kernel on first use). bf16 stops early once a run is already 4x slower than fp32's (no gain possible:
    on a CPU without native bf16 a single run is tens of times slower, and more reps would only waste time)."""
    def one(a, b):
        t = time.perf_counter()
        torch.mm(a, b)
        return time.perf_counter() - t

    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one(a32, b32), one(a16, b16)
        fp32, bf16 = [], []
        for _ in range(reps):
            fp32.append(one(a32, b32))
            bf16.append(one(a16, b16))
            if bf16[-1] > 4 * fp32[-1]:
                break
    finally:
        torch.set_num_threads(threads)
    return statistics.median(fp32) / statistics.median(bf16)


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _cached_speedup() -> float | None:
    entry = _read_cache().get(machine_key())
    ok = isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float))
    return float(entry["speedup"]) if ok else None


def measured_speedup() -> float:
    """The cached micro-benchmark verdict for this machine, measured (cpu_matmul_speedup) and stored the first
    time. The lock makes processes that start together (torchrun ranks, a class's workers) measure once and
    all read that one figure; without a writable cache folder each measures for itself."""
    cached = _cached_speedup()
    if cached is not None:
        return cached
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=120)
        lock.acquire()
    except (OSError, Timeout):
        return float(cpu_matmul_speedup())
    try:
        cached = _cached_speedup()  # another process measured while this one waited
        if cached is not None:
            return cached
        speedup = float(cpu_matmul_speedup())
        data = _read_cache()
        data[machine_key()] = {"speedup": round(speedup, 3), "n": BENCH_N, "threads": 1,
                               "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:  # a read-only home must not stop training: the verdict is then measured again next time
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, path)
        except OSError:
            pass
        return round(speedup, 3)
    finally:
        lock.release()


def cpu_bf16_is_faster() -> bool:
    """Whether auto takes bf16 on this CPU: RLHF_LAB_CPU_BF16 when set, else the CPU's flags, else the cached
    micro-benchmark (see the module doc)."""
    forced = os.environ.get(FORCE_ENV, "").strip()
    if forced:
        if forced not in ("0", "1"):
            raise ConfigError(f"{FORCE_ENV} must be 1 (treat this CPU as having fast bf16) or 0 (as not), "
                              f"got {forced!r}; unset it to let the CPU's flags decide")
        return forced == "1"
    flags = cpu_bf16_flags()
    if flags is not None:
        return flags
    return measured_speedup() >= BF16_MIN_SPEEDUP


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
