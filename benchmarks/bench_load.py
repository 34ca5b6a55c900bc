"""Loading, side by side in one run (issues 3 and 4).

In this process, best of N, each tool on the same file:
  - a torch checkpoint of 20,000 small tensors, and one of a few large
    tensors (with and without mmap): aisbom.safe_load against
    torch.load(weights_only=True) and torch.load(weights_only=False);
  - an opcode-dense plain pickle: aisbom.safe_loads against C pickle.loads.
In fresh interpreters, interleaved rounds, the median:
  - a legacy (non-zip) torch file holding a whole nn.Module: `python -c
    "aisbom.safe_load(path)"`, which loads it in the sandbox, against
    `python -c "torch.load(path, weights_only=False)"`, interpreter start
    included on both sides.
Targets: safe_load at least 5x faster than weights_only=True on the
many-tensor checkpoint and no slower than weights_only=False; safe_loads
within 1.5x of pickle.loads; the sandboxed load within 1.3x of the unsafe one.

    python benchmarks/bench_load.py            # writes benchmarks/results/load.json
"""
from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import time
import warnings
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_of, save, scratch, table  # noqa: E402

import torch  # noqa: E402

import aisbom  # noqa: E402


def many_tensors(path: str, n: int = 20_000) -> None:
    torch.save({f"layer{i}.weight": torch.randn(4) for i in range(n)}, path)


def few_large(path: str) -> None:
    torch.save({f"block{i}": torch.randn(4096, 4096) for i in range(4)}, path)  # 4 x 64 MiB


def dense_pickle(n: int = 400_000) -> bytes:
    return pickle.dumps([(i, i * 0.5, str(i % 1000), None, True, [i, -i]) for i in range(n)], protocol=4)


def legacy_module(path: str) -> None:
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(8)])  # ~8 MB of weights
    torch.save(model, path, _use_new_zipfile_serialization=False)


def checkpoint_rows(path: str, repeat: int) -> List[tuple]:
    return [
        ("aisbom.safe_load", best_of(lambda: aisbom.safe_load(path), repeat), ""),
        ("aisbom.safe_load(mmap=True)", best_of(lambda: aisbom.safe_load(path, mmap=True), repeat), ""),
        ("torch.load(weights_only=True)", best_of(lambda: torch.load(path, weights_only=True), repeat), ""),
        ("torch.load(weights_only=True, mmap=True)",
         best_of(lambda: torch.load(path, weights_only=True, mmap=True), repeat), ""),
        ("torch.load(weights_only=False)", best_of(lambda: torch.load(path, weights_only=False), repeat),
         "trusts the file"),
        ("torch.load(weights_only=False, mmap=True)",
         best_of(lambda: torch.load(path, weights_only=False, mmap=True), repeat), "trusts the file"),
    ]


def fresh(code: str, path: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-W", "ignore", "-c", code, path], check=True)
    return time.perf_counter() - t


def sandboxed_rows(path: str, rounds: int) -> List[tuple]:
    unsafe = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"
    safe = "import sys, aisbom; aisbom.safe_load(sys.argv[1])"
    start = "pass"
    times: Dict[str, List[float]] = {"unsafe": [], "safe": [], "start": []}
    for r in range(rounds):  # interleaved, rotating order: load changes hit all alike
        order = [("unsafe", unsafe), ("safe", safe), ("start", start)]
        for name, code in order[r % 3:] + order[:r % 3]:
            times[name].append(fresh(code, path))
    med = {k: statistics.median(v) for k, v in times.items()}
    return [
        ("python -c 'aisbom.safe_load(p)' (sandboxed)", med["safe"], "new interpreter, median"),
        ("python -c 'torch.load(p, weights_only=False)'", med["unsafe"], "new interpreter, median; trusts the file"),
        ("python -c pass", med["start"], "interpreter start alone"),
    ]


def ratio(rows: List[dict], a: str, b: str) -> float:
    sec = {r["tool"]: r["seconds"] for r in rows}
    return sec[b] / sec[a]


def run(repeat: int, rounds: int) -> dict:
    folder = scratch()
    results: dict = {"python": sys.version.split()[0], "torch": torch.__version__}

    path = os.path.join(folder, "many.pt")
    many_tensors(path)
    rows = table("torch checkpoint, 20,000 small tensors", checkpoint_rows(path, repeat),
                 baseline="aisbom.safe_load")
    results["many_tensors"] = rows
    results["many_tensors_ratios"] = {
        "weights_only_true_over_safe_load": ratio(rows, "aisbom.safe_load", "torch.load(weights_only=True)"),
        "weights_only_false_over_safe_load": ratio(rows, "aisbom.safe_load", "torch.load(weights_only=False)"),
    }

    path = os.path.join(folder, "large.pt")
    few_large(path)
    rows = table("torch checkpoint, 4 tensors of 64 MiB", checkpoint_rows(path, repeat),
                 baseline="aisbom.safe_load")
    results["few_large"] = rows

    data = dense_pickle()
    rows = table(f"opcode-dense plain pickle, {len(data) / 1e6:.1f} MB", [
        ("aisbom.safe_loads", best_of(lambda: aisbom.safe_loads(data), repeat), "scan + allowlisting load"),
        ("pickle.loads (C)", best_of(lambda: pickle.loads(data), repeat), "trusts the bytes"),
    ], len(data), baseline="pickle.loads (C)")
    results["dense"] = rows
    results["dense_ratio_safe_loads_over_pickle"] = ratio(rows, "pickle.loads (C)", "aisbom.safe_loads")

    path = os.path.join(folder, "module-legacy.pt")
    legacy_module(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aisbom.safe_load(path)  # fail here, not in a subprocess, if the sandbox is missing
    rows = table("legacy torch file with a whole nn.Module (sandboxed), new interpreters",
                 sandboxed_rows(path, rounds), baseline="python -c 'torch.load(p, weights_only=False)'")
    results["sandboxed_module"] = rows
    results["sandboxed_ratio"] = ratio(rows, "python -c 'torch.load(p, weights_only=False)'",
                                       "python -c 'aisbom.safe_load(p)' (sandboxed)")

    print("\nratios:")
    for key, value in results.items():
        if "ratio" in key:
            print(f"  {key}: {value}")
    print("\nwrote", save("load", results))
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="best of this many in-process runs")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved fresh-interpreter rounds")
    args = ap.parse_args()
    run(args.repeat, args.rounds)
