#!/usr/bin/env bash
# One prepared GPU check (issue 7), meant to finish in under 8 minutes on an H100:
#   1. the test suite with every device choice forced to the GPU (RLHF_LAB_DEVICE),
#   2. benchmarks/ppo_iteration.py at the TRL reference setting and at the `gpu` preset shape,
#   3. TRL 1.12's PPO at the reference setting, when its wheel was carried into .peer/; GRPO and DPO
#      (benchmarks/grpo_iteration.py, dpo_step.py) at the reference and gpu shapes, the current TRL beside them,
#   4. the reward-KL frontier's default sweep (rlhf-lab frontier --preset default), its wall time and fits,
#   5. a compact report: device, s/iter, generated tokens/s, the update phase's TFLOP/s and its share of
#      the device's bf16 peak, the frontier's wall time.
# Usage: bash scripts/gpu_check.sh [--device cuda|cpu] [--skip-tests]
# With --device cpu it runs the same steps on the CPU (for checking the script itself on a laptop).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda; SKIP_TESTS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2;;
    --skip-tests) SKIP_TESTS=1; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUTDIR="${OUT:-/tmp/gpu_check}"; rm -f "$OUTDIR"/*.jsonl; mkdir -p "$OUTDIR"
PY=${PYTHON:-python}
# vaderSentiment (and friends) carried as wheels into .peer/wheels when the machine has no internet;
# TRL 1.12 in .peer/trl_1_12_0 and its own needs (datasets, accelerate) in .peer/deps, as ../shared/peers/README.md says
if ls .peer/wheels/*.whl >/dev/null 2>&1; then $PY -m pip install -q --no-index --find-links .peer/wheels .peer/wheels/*.whl || true; fi
$PY -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || true

$PY - <<PY
import torch
print("device check:", torch.__version__, "cuda" if torch.cuda.is_available() else "no cuda",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
if "$DEVICE" == "cuda" and not torch.cuda.is_available():
    raise SystemExit("gpu_check: --device cuda but torch sees no CUDA GPU")
PY
[ $? -eq 0 ] || exit 2

if [ "$SKIP_TESTS" = 0 ]; then
  echo "== tests on $DEVICE"
  RLHF_LAB_DEVICE=$DEVICE timeout 240 $PY -m pytest -x -q -m "not browser" 2>&1 | tail -15 | tee "$OUTDIR/tests.txt"
fi

BF16=""; [ "$DEVICE" = cuda ] && BF16="--bf16"
echo "== PPO iteration, reference setting"
timeout 120 $PY benchmarks/ppo_iteration.py --device "$DEVICE" --iterations 6 --quiet --json-out "$OUTDIR/ref.jsonl" | tail -1
timeout 120 $PY benchmarks/ppo_iteration.py --device "$DEVICE" $BF16 --iterations 6 --quiet --json-out "$OUTDIR/ref_bf16.jsonl" | tail -1
if [ "$DEVICE" = cuda ]; then
  echo "== PPO iteration, gpu preset shape (12 layers, 768 wide, 128 prompts, 48 response tokens)"
  timeout 180 $PY benchmarks/ppo_iteration.py --device "$DEVICE" $BF16 --iterations 4 --quiet --layers 12 --embd 768 --heads 12 \
    --batch 128 --response-length 48 --json-out "$OUTDIR/gpu.jsonl" | tail -1
else
  echo "== gpu preset shape skipped on $DEVICE (minutes per iteration on a laptop CPU)"
fi
if [ -d .peer/trl_1_12_0 ] && [ -f shared/peers/trl_ppo_bench.py -o -f ../shared/peers/trl_ppo_bench.py ]; then
  PEER=$( [ -f shared/peers/trl_ppo_bench.py ] && echo shared/peers/trl_ppo_bench.py || echo ../shared/peers/trl_ppo_bench.py )
  echo "== TRL 1.12 PPO, reference setting"
  PYTHONPATH=.peer/trl_1_12_0:.peer/deps timeout 180 $PY "$PEER" --iterations 6 --quiet --json-out "$OUTDIR/trl.jsonl" | tail -1
fi

echo "== GRPO iteration and DPO step (issue 12), reference setting"
timeout 90 $PY benchmarks/grpo_iteration.py --device "$DEVICE" --iterations 6 --quiet --json-out "$OUTDIR/grpo_ref.jsonl" | tail -1
timeout 90 $PY benchmarks/dpo_step.py --device "$DEVICE" --iterations 8 --quiet --json-out "$OUTDIR/dpo_ref.jsonl" | tail -1
if [ "$DEVICE" = cuda ]; then
  echo "== GRPO and DPO at the gpu preset shape (12 layers, 768 wide; 16 prompts x 8, 48 tokens; 64 pairs of 56 tokens)"
  timeout 120 $PY benchmarks/grpo_iteration.py --device "$DEVICE" $BF16 --iterations 4 --quiet --layers 12 --embd 768 \
    --heads 12 --prompts 16 --generations 8 --completion-length 48 --json-out "$OUTDIR/grpo_gpu.jsonl" | tail -1
  timeout 120 $PY benchmarks/dpo_step.py --device "$DEVICE" $BF16 --iterations 6 --quiet --layers 12 --embd 768 \
    --heads 12 --completion-length 48 --max-length 56 --json-out "$OUTDIR/dpo_gpu.jsonl" | tail -1
fi
PEERS=$( [ -d shared/peers ] && echo shared/peers || echo ../shared/peers )
if [ -d .peer/trl_latest ] && [ -f "$PEERS/trl_grpo_bench.py" ]; then
  echo "== current TRL's GRPO and DPO, reference setting"
  PYTHONPATH=.peer/deps timeout 150 $PY "$PEERS/trl_grpo_bench.py" --trl-path .peer/trl_latest --iterations 6 --quiet \
    --json-out "$OUTDIR/trl_grpo.jsonl" 2>/dev/null | grep SUMMARY | cut -c1-300
  PYTHONPATH=.peer/deps timeout 150 $PY "$PEERS/trl_dpo_bench.py" --trl-path .peer/trl_latest --iterations 8 --quiet \
    --json-out "$OUTDIR/trl_dpo.jsonl" 2>/dev/null | grep SUMMARY | cut -c1-300
fi

echo "== reward-KL frontier, default sweep (issue 13): wall time and fits"
rm -rf "$OUTDIR/frontier"
FR_START=$(date +%s)
timeout 420 $PY -m lab.cli frontier --preset default --device "$DEVICE" --out "$OUTDIR/frontier" 2>/dev/null | tail -8
echo "{\"frontier_wall_s\": $(( $(date +%s) - FR_START ))}" > "$OUTDIR/frontier.jsonl"

$PY - "$OUTDIR" <<'PY'
import json, os, sys
out = sys.argv[1]
def last(name):
    p = os.path.join(out, name)
    return json.loads(open(p).read().strip().splitlines()[-1]) if os.path.exists(p) else None
try:
    import torch
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
except Exception:
    name = "?"
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}   # dense bf16 tensor-core peak, SXM
peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
def params(layers, d, vocab=1024, pos=128):
    return layers * 12 * d * d + (vocab + pos) * d
report = {"device": name}
for key, fname, (layers, d) in [("reference_fp32", "ref.jsonl", (4, 128)), ("reference_bf16", "ref_bf16.jsonl", (4, 128)),
                                ("gpu_preset", "gpu.jsonl", (12, 768))]:
    s = last(fname)
    if not s:
        continue
    B, T = s.get("batch", 0), s.get("prompt_length", 8) + s.get("response_length", 0)
    steps_tokens = s.get("ppo_epochs", 4) * B * T                  # tokens through each model per iteration
    # update = forward + backward (6 N flops/token) of the policy and the value model
    n = s.get("policy_params") or params(layers, d)
    flops = 6 * 2 * n * steps_tokens
    upd = s.get("update_s_median") or float("nan")
    tflops = flops / upd / 1e12 if upd == upd and upd > 0 else None
    report[key] = {"iter_s_median": s.get("iter_s_median"), "gen_tokens_per_s": s.get("gen_tokens_per_s_overall_median"),
                   "update_s": upd, "update_tflops": round(tflops, 2) if tflops else None,
                   "share_of_bf16_peak": round(tflops * 1e12 / peak, 3) if (tflops and peak) else None}
trl = last("trl.jsonl")
if trl and report.get("reference_fp32"):
    report["trl_iter_s_median"] = trl.get("iter_s_median")
    report["speedup_vs_trl"] = round(trl["iter_s_median"] / report["reference_fp32"]["iter_s_median"], 2)
for method, ours, gpu, peer in (("grpo", "grpo_ref.jsonl", "grpo_gpu.jsonl", "trl_grpo.jsonl"),
                                ("dpo", "dpo_ref.jsonl", "dpo_gpu.jsonl", "trl_dpo.jsonl")):
    a, g, b = last(ours), last(gpu), last(peer)
    if a:
        report[method] = {"iter_s_median": a.get("iter_s_median"), "gpu_shape_iter_s": g and g.get("iter_s_median"),
                          "trl_iter_s_median": b and b.get("iter_s_median"),
                          "ratio_to_trl": round(a["iter_s_median"] / b["iter_s_median"], 3) if b else None}
fr = last("frontier.jsonl")
if fr:
    report["frontier_default_wall_s"] = fr["frontier_wall_s"]
    fits = os.path.join(out, "frontier", "fits.json")
    if os.path.exists(fits):
        report["frontier_gold_r2"] = {m: round(f["gold"].get("r2", float("nan")), 3) for m, f in json.load(open(fits)).items()
                                      if not m.startswith("_") and "r2" in f["gold"]}
print("GPU_CHECK " + json.dumps(report))
PY
