"""The longest functions of the package at a git revision (lines per def), for comparing a refactor before and after.

Usage: python benchmarks/tools/longest_functions.py REV   (e.g. b91d0c2, HEAD)
"""
import ast, subprocess, sys
def funcs(src, fname):
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.end_lineno - node.lineno + 1, f"{fname}:{node.name}"))
    return out
if len(sys.argv) != 2:
    sys.exit("usage: python benchmarks/tools/longest_functions.py REV")
rev = sys.argv[1]
listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], capture_output=True, text=True)
if listed.returncode:
    sys.exit(f"longest_functions: {rev!r} is not a revision of this repository")
files = listed.stdout.split()
allf = []
for f in files:
    if f.endswith(".py") and f.split("/")[0] in ("bench", "methods", "evaluators"):
        src = subprocess.run(["git", "show", f"{rev}:{f}"], capture_output=True, text=True).stdout
        allf += funcs(src, f)
for n, name in sorted(allf, reverse=True)[:8]:
    print(f"{n:4d} {name}")
