#!/usr/bin/env bash
# The paper preset's rehearsal (benchmarks/speed/paper_rehearsal.py) on a CUDA machine, printing per-stage times and peak
# memory beside the dry run's estimate. Two halves:
#
#   bash benchmarks/speed/paper_rehearsal_device.sh prepare DATA_DIR
#       here, where package registries are reachable: the wheels the device image lacks (datasets and its own
#       needs, faiss-cpu) into .whl/, and the task data cut to the rehearsal's rows into .rehearsal-data/ (both
#       ignored by git through .git/info/exclude, so they travel only when carried)
#   bash benchmarks/speed/paper_rehearsal_device.sh run
#       on the device machine (the workplace's `device` tool: run with carry [".whl", ".rehearsal-data"] and a
#       timeout under its per-command limit): installs the wheels and dilmbench without network, then rehearses
#       sst2, qqp and mnli with the ICL models gpt2-xl, opt-2.7b and Llama-2-7b (its stand-in in bfloat16) and writes
#       $OUT/paper_rehearsal_cuda.txt
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
    data="${2:?usage: prepare DATA_DIR (GLUE parquet layout: sst2/, qqp/, mnli/)}"
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    grep -qx '/.rehearsal-data/' .git/info/exclude 2>/dev/null || echo '/.rehearsal-data/' >> .git/info/exclude
    plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
        -d .whl datasets dill multiprocess faiss-cpu
    python3 - "$data" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks/speed")
from paper_rehearsal import slice_data
slice_data(Path(sys.argv[1]), Path(".rehearsal-data"), ["sst2", "qqp", "mnli"], 3000, 64)
print("data cut into .rehearsal-data/")
EOF
    du -sh .whl .rehearsal-data
    ;;
run)
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site
    fi
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    out="${OUT:-.}"
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    python3 benchmarks/speed/paper_rehearsal.py --device cuda --data-dir .rehearsal-data --eval-rows 64 \
        --work /tmp/dilmbench-rehearsal --icl gpt2-xl,facebook/opt-2.7b,meta-llama/Llama-2-7b-hf \
        --out "$out/paper_rehearsal_cuda.txt" 2>&1 | tee "$out/paper_rehearsal_cuda.log"
    ;;
*)
    echo "usage: $0 prepare DATA_DIR | run" >&2
    exit 2
    ;;
esac
