"""The README's speed table, from the latest results of the four benchmarks.

    python benchmarks/summary.py          # after bench_scan, bench_load, bench_jail, bench_many
    python benchmarks/summary.py --many   # the directory table of docs/scale.md

Reads benchmarks/results/{scan,load,jail,many}.json and prints a Markdown
table: each target of the issues next to what was measured, so the README
quotes numbers a benchmark wrote, never numbers typed by hand.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _load(name: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(RESULTS, f"{name}.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _row(rows: List[Dict[str, Any]], tool: str, key: str = "seconds") -> float:
    for r in rows:
        if r["tool"] == tool:
            return float(r[key])
    raise KeyError(tool)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def lines() -> List[str]:
    out = ["| measured | aisbom | the alternative | ratio | target |", "|---|---:|---:|---:|---|"]
    scan = _load("scan")
    if scan:
        dense = scan["dense"]["rows"]
        mb = scan["dense"]["size"] / 1e6
        ours = _row(dense, "aisbom.scan(path)")
        label = f"scan, opcode-dense pickle of {mb:.0f} MB | {mb / ours:,.0f} MB/s"
        for tool, target in (("picklescan", 100), ("pickle.loads (C)", 3)):
            try:
                theirs = _row(dense, tool)
            except KeyError:
                continue
            out.append(f"| {label} | {tool} "
                       f"{mb / theirs:,.1f} MB/s | {theirs / ours:,.1f}x faster | >= {target}x: "
                       f"{_mark(theirs / ours >= target)} |")
            label = " | "
        ck = scan["checkpoint"]["rows"]
        ours = _row(ck, "aisbom.scan(path)")
        label = f"scan, torch checkpoint of 20,000 tensors | {_ms(ours)}"
        for tool in ("picklescan", "pickle Unpickler on data.pkl (C)"):
            try:
                theirs = _row(ck, tool)
            except KeyError:
                continue
            out.append(f"| {label} | {tool} {_ms(theirs)} | {theirs / ours:,.1f}x faster | |")
            label = " | "
    load = _load("load")
    if load:
        many = load["many_tensors"]
        ours = _row(many, "aisbom.safe_load")
        wo_true = _row(many, "torch.load(weights_only=True)")
        wo_false = _row(many, "torch.load(weights_only=False)")
        out.append(f"| load, checkpoint of 20,000 small tensors | {_ms(ours)} | torch.load(weights_only=True) "
                   f"{_ms(wo_true)} | {wo_true / ours:.1f}x faster | >= 5x: {_mark(wo_true / ours >= 5)} |")
        out.append(f"| | | torch.load(weights_only=False) {_ms(wo_false)} | {wo_false / ours:.1f}x faster | "
                   f"not slower: {_mark(wo_false >= ours)} |")
        big = load["few_large"]
        ours, theirs = _row(big, "aisbom.safe_load"), _row(big, "torch.load(weights_only=True)")
        out.append(f"| load, 4 tensors of 64 MiB | {_ms(ours)} | torch.load(weights_only=True) {_ms(theirs)} | "
                   f"{theirs / ours:.2f}x | |")
        dense = load["dense"]
        ours, theirs = _row(dense, "aisbom.safe_loads"), _row(dense, "pickle.loads (C)")
        out.append(f"| load, opcode-dense plain pickle | {_ms(ours)} | pickle.loads {_ms(theirs)} | "
                   f"{ours / theirs:.2f}x its time | within 1.5x: {_mark(ours <= 1.5 * theirs)} |")
        sb = load["sandboxed_module"]
        ours = _row(sb, "python -c 'aisbom.safe_load(p)' (sandboxed)")
        theirs = _row(sb, "python -c 'torch.load(p, weights_only=False)'")
        out.append(f"| sandboxed load of a legacy file with a whole nn.Module, new interpreter | {_ms(ours)} | "
                   f"unsafe torch.load {_ms(theirs)} | {ours / theirs:.2f}x its time | within 1.3x: "
                   f"{_mark(ours <= 1.3 * theirs)} |")
    jail = _load("jail")
    if jail:
        med = jail["median_ms"]
        bw = f"bubblewrap +{med['bubblewrap'] - med['plain subprocess']:.1f} ms" if "bubblewrap" in med else ""
        over = jail["jail_overhead_ms"]
        out.append(f"| jail spawn-to-exit of `python -c pass` | +{over:.1f} ms over a plain subprocess | {bw} | | "
                   f"within 20 ms: {_mark(over <= 20)} |")
    many = _load("many")
    if many:
        rows = {r["tool"]: r for r in many["rows"]}
        best = min(("aisbom CLI --jobs 1", "aisbom CLI --jobs 2"), key=lambda t: rows[t]["median_seconds"])
        ps = rows.get("picklescan --path DIR")
        ms = rows.get("modelscan -p DIR")
        ours = rows[best]["files_per_s"]
        if ps:
            ratio = ours / ps["files_per_s"]
            out.append(f"| directory of {many['files']:,} model files, `{best[11:]}` | {ours:,.0f} files/s | "
                       f"picklescan {ps['files_per_s']:,.0f} files/s | {ratio:.1f}x | >= 20x: {_mark(ratio >= 20)} |")
        if ms:
            out.append(f"| | | modelscan {ms['files_per_s']:,.0f} files/s | {ours / ms['files_per_s']:.1f}x | |")
    return out


def many_lines() -> List[str]:
    """docs/scale.md's throughput table: every row of bench_many."""
    many = _load("many")
    if not many:
        return []
    out = [f"| ({many['files']:,} files, median of {many['rounds']} rounds) | files/s | vs picklescan CLI |",
           "|---|---:|---:|"]
    for r in many["rows"]:
        out.append(f"| {r['tool']} ({r['note']}) | {r['files_per_s']:,.0f} | {r['ratios']['picklescan']:.1f}x |")
    return out


def main() -> int:
    print("\n".join(many_lines() if sys.argv[1:] == ["--many"] else lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
