#!/usr/bin/env bash
# The README's two commands as a newcomer runs them: a fresh clone of HEAD, an empty virtual environment, no pip
# download cache, an empty dilmbench cache (so the SST-2 pool is embedded again). The Hugging Face model cache is the
# machine's (the Hub cannot be reached here; shared/tools/warm-hf-cache fills it), so HF_HUB_OFFLINE=1.
# Each command is read from the README's lines 3 and 4 (not retyped here) and timed; the output goes to stdout.
#
# Usage: bash benchmarks/tools/readme_fresh_venv.sh > results/benchmarks/readme_fresh_venv.txt
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/dilmbench"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
cd "$work/dilmbench"
export HF_HUB_OFFLINE=1 PIP_NO_CACHE_DIR=1 DILMBENCH_CACHE="$work/cache"
main="$(sed -n 3p README.md | sed 's/^ *//')"
tests="$(sed -n 4p README.md | sed 's/^ *//')"
echo "# README's two commands on a fresh clone of $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d)"
echo "# fresh venv ($(python --version)), no pip download cache, empty DILMBENCH_CACHE; HF model cache warmed"
echo "# machine: $(nproc) CPU cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
set +e
for cmd in "$main" "$tests"; do
    echo
    echo "\$ $cmd"
    total=0
    # each part of the command line on its own clock (install, run, table / tests)
    while IFS= read -r part; do
        start=$(date +%s)
        bash -c "$part" > "$work/out.log" 2>&1
        status=$?
        took=$(( $(date +%s) - start ))
        total=$(( total + took ))
        # pip's own lines are noise here; everything else the command printed is kept
        grep -v -E '^(  |Collecting|Downloading|Requirement already|Installing collected|Building|Created wheel|Stored in|Successfully|Obtaining|Preparing|Checking|Getting requirements|Looking in|Using cached|Processing|WARNING: Running pip|WARNING: Location|Generating )' \
            "$work/out.log"
        echo "# [$part] exit status $status, wall $took s"
        [ "$status" = 0 ] || exit "$status"
    done < <(echo "$cmd" | sed 's/ && /\n/g')
    echo "# the whole line: $total s; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
done
