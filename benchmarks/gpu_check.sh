#!/usr/bin/env bash
# A GPU check, ready to run on a CUDA machine with this repository checked out:
#
#     benchmarks/gpu_check.sh OUTDIR
#
# installs the project (make venv), runs the tests that exercise the device paths (every test
# builds its models on the device init_distributed picks, i.e. the GPU), then the benchmarks:
# training throughput, peak memory and model FLOP utilisation of the Mini and the Taiwan-size
# (448 x 448: regression, diffusion, patched diffusion) networks, ours against a bare loop, in
# fp32 and bf16 and with torch.compile off and on; generation batched against one member and
# one time at a time (and a 2-member run); scoring. Each step has its own time limit so the
# whole check fits in about 10 minutes on an H100/H200; each writes a log, the benchmarks also
# JSON, all under OUTDIR. A failed step is recorded in OUTDIR/summary.txt and the check goes
# on with the next.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

step() {  # step NAME LIMIT_SECONDS COMMAND...: run, log, record status and time
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "=== $name: $*" | tee -a "$SUMMARY"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local status=$?
    echo "    exit $status after $((SECONDS - start)) s (log: $OUT/$name.log)" | tee -a "$SUMMARY"
}

step install 300 make venv
PY=.venv/bin/python
step device 60 "$PY" -c "import torch, json; print(json.dumps({'cuda': torch.cuda.is_available(), \
'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', \
'torch': torch.__version__}))"
cp "$OUT/device.log" "$OUT/device.json" 2>/dev/null
step tests 150 "$PY" -m pytest -x -q tests/test_training.py tests/test_regression_cache.py \
    tests/test_generate.py -k "performance or deferred or host_sync or cache or batch or patch"
TRAIN="$PY benchmarks/bench_train.py --json"
step bench_train_mini_fp32 90 sh -c "$TRAIN --cases regression_mini diffusion_mini \
    --precision fp32 --rounds 3 > '$OUT/bench_train_mini_fp32.json'"
step bench_train_mini_bf16 90 sh -c "$TRAIN --cases regression_mini diffusion_mini \
    --precision amp-bf16 --rounds 3 > '$OUT/bench_train_mini_bf16.json'"
step bench_train_taiwan_bf16 150 sh -c "$TRAIN --cases regression_taiwan diffusion_taiwan \
    patched_taiwan --precision amp-bf16 --rounds 2 --steps 5 \
    > '$OUT/bench_train_taiwan_bf16.json'"
step bench_train_taiwan_fp32 120 sh -c "$TRAIN --cases diffusion_taiwan --precision fp32 \
    --rounds 2 --steps 5 > '$OUT/bench_train_taiwan_fp32.json'"
step bench_train_taiwan_bf16_compile 180 sh -c "$TRAIN --cases diffusion_taiwan \
    patched_taiwan --precision amp-bf16 --compile --rounds 2 --steps 5 \
    > '$OUT/bench_train_taiwan_bf16_compile.json'"
step bench_generate 120 sh -c "$PY benchmarks/bench_generate.py --members 16 --times 4 \
    --rounds 2 --json > '$OUT/bench_generate.json'"
step generate_2_members 60 sh -c "$PY benchmarks/bench_generate.py --members 2 --times 1 \
    --rounds 1 --json > '$OUT/generate_2_members.json'"
step bench_score 60 sh -c "$PY benchmarks/bench_score.py --times 24 --members 16 --size 256 \
    > '$OUT/bench_score.txt'"
echo "done; summary in $SUMMARY"
