#!/usr/bin/env bash
# `dilmbench table` (plain, --cards, --cost) on every committed results folder, by the package at REV and by the
# working tree's, compared byte for byte: a refactor must not change what a table says.
# Usage: bash benchmarks/tools/tables_before_after.sh REV   (run from the repository root, the package installed)
set -euo pipefail
rev="$1"
tmp="$(mktemp -d)"
git worktree add -q "$tmp/tree" "$rev"
python -m pip install -q --no-deps --target "$tmp/site" "$tmp/tree" >/dev/null 2>&1
export HF_HUB_OFFLINE=1
table() { python -c "import sys; from dilmbench.cli import main; sys.argv = ['dilmbench'] + sys.argv[1:]; main()" table "$@" 2>&1 || true; }  # an error (a dev-only folder) is output too
n=0; bad=0
for d in $(find results -name grid.yaml -printf '%h\n' | sort); do
  split=""; [ -d "$d/runs" ] || split="--split dev"  # a folder scored on the dev split only
  for extra in "" "--cards" "--cost"; do
    a="$(PYTHONPATH="$tmp/site" table --out "$d" $split $extra)"
    b="$(table --out "$d" $split $extra)"
    n=$((n + 1))
    if [ "$a" != "$b" ]; then bad=$((bad + 1)); echo "differs: $d $extra"; fi
  done
done
git worktree remove --force "$tmp/tree"
echo "$n table outputs compared (the package at $rev against the working tree's), $bad differ"
