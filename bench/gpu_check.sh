#!/usr/bin/env bash
# One check for a CUDA machine, in under 5 minutes: the training bench on the GPU (bf16 autocast, fused
# AdamW, SDPA/flash attention, compiled layers, MFU against the GPU's measured peak) and the tiny
# pipeline end to end (`dvc repro` on tests/helpers/tiny_params.yaml, training on the GPU). Offline: without
# models/base it benches a randomly initialised model of SmolLM2-135M's shape (speed does not depend on
# the weights). On a machine without CUDA it says so, skips the GPU parts and still runs the tiny
# pipeline, so the script itself is tested on CPU (tests/bench/test_gpu_check.py).
#
#   bench/gpu_check.sh [OUT_DIR]      figures -> OUT_DIR/gpu_check.json (default metrics/gpu_check)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-metrics/gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
start=$(date +%s)
skipped=()

cuda=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))')
if [ "$cuda" = 1 ]; then
  "$PY" -c 'import torch; print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__)'
  base=models/base
  if [ ! -f "$base/config.json" ]; then
    base="$OUT/base-random"
    echo "no models/base: benching a random-weight model of SmolLM2-135M's shape in $base"
    "$PY" - "$base" <<'EOF'
import sys
import torch
from transformers import LlamaConfig, LlamaForCausalLM

config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                     num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                     tie_word_embeddings=True, rope_theta=100000.0)
torch.manual_seed(0)
LlamaForCausalLM(config).save_pretrained(sys.argv[1])
EOF
  fi
  # What attention the GPU path gets: transformers' "sdpa", which picks flash attention for bf16 on
  # recent GPUs. Checked directly here, so a missing kernel shows up as a figure, not as a silent fallback.
  "$PY" - "$OUT/attention.json" <<'EOF'
import json, sys, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
q = torch.randn(8, 9, 128, 64, device="cuda", dtype=torch.bfloat16)
result = {}
for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
    try:
        with sdpa_kernel(backend):
            torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        result[name] = "ok"
    except RuntimeError as exc:
        result[name] = f"unavailable: {str(exc).splitlines()[0]}"
json.dump(result, open(sys.argv[1], "w"), indent=2)
print("SDPA kernels:", result)
EOF
  # The default path and its GPU levers, each switched off once; batch 32 x 128 gives the GPU some work.
  "$PY" bench/train_throughput.py --base "$base" --data data/tokenized --batch-size 32 --warmup 3 --steps 10 \
    --variants trainer_bf16,transferlm,no_compile,no_fused_optimizer,no_fused_loss --out "$OUT/bench_train.json"
else
  echo "no CUDA device: skipped the GPU parts (training bench with bf16 autocast, fused AdamW, SDPA/flash" \
       "attention, compile, MFU against the GPU's peak)"
  skipped=(bench_train attention)
fi

# The tiny pipeline, end to end, in a scratch copy of this checkout (tracked and untracked-but-not-ignored
# files, as the tests' shared tiny project does).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files --cached --others --exclude-standard -z | while IFS= read -r -d '' f; do
  # The committed default run's per-run folders stay behind (as in the tests' shared tiny project).
  case "$f" in metrics/study/*|metrics/ladder/*|metrics/fractions/*|metrics/scratch_seeds/*|metrics/scratch_long/*|metrics/finetune/*|metrics/timings/*) continue ;; esac
  if [ -f "$f" ]; then mkdir -p "$work/$(dirname "$f")" && cp -p "$f" "$work/$f"; fi
done
pipeline_start=$(date +%s)
(
  cd "$work"
  export TRANSFERLM_CACHE="$work/.cache" DVC_NO_ANALYTICS=1
  export GIT_AUTHOR_NAME=check GIT_AUTHOR_EMAIL=check@localhost GIT_COMMITTER_NAME=check GIT_COMMITTER_EMAIL=check@localhost
  "$PY" tests/tiny.py setup
  git init -q && git add -A && git commit -qm "tiny pipeline"
  # GPU_CHECK_REPRO_TARGET (a stage name, default: every stage) lets the test suite stop at `train`: the whole
  # tiny pipeline already runs in tests/e2e/test_pipeline.py, and the rest of it trains nothing on a GPU.
  dvc repro ${GPU_CHECK_REPRO_TARGET:-} > "$OUT/pipeline.log" 2>&1 || { tail -40 "$OUT/pipeline.log"; exit 1; }
  cp metrics/finetune/metrics.json "$OUT/pipeline_train.json"
)
pipeline_seconds=$(( $(date +%s) - pipeline_start ))
echo "tiny pipeline: dvc repro ok in ${pipeline_seconds} s"

"$PY" - "$OUT" "$cuda" "$(( $(date +%s) - start ))" "$pipeline_seconds" "${skipped[@]}" <<'EOF'
import json, os, sys
from pathlib import Path

out, cuda, seconds, pipeline_seconds, skipped = Path(sys.argv[1]), sys.argv[2] == "1", *map(int, sys.argv[3:5]), sys.argv[5:]
report = {"cuda": cuda, "skipped": skipped, "seconds": seconds}
train = json.loads((out / "pipeline_train.json").read_text())
report["tiny_pipeline"] = {"ok": True, "seconds": pipeline_seconds, "precision": train.get("precision"),
                           "final_val_loss": train.get("final_val_loss"),
                           "target": os.environ.get("GPU_CHECK_REPRO_TARGET") or "every stage"}
if cuda:
    import torch

    bench = json.loads((out / "bench_train.json").read_text())
    report["device"] = torch.cuda.get_device_name()
    report["attention"] = json.loads((out / "attention.json").read_text())
    report["matmul_peak_gflops"] = bench["matmul_peak_gflops"]
    report["bench"] = {name: {k: row.get(k) for k in ("tokens_per_s", "precision", "mfu", "peak_gpu_mb")}
                       for name, row in bench["variants"].items()}
    report["goals"] = bench.get("goals")
(out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
EOF
