"""The `aisbom` command (also `python -m aisbom`).

Exit status of `aisbom scan`: 0 when every file is clean (or below
--fail-on), 1 when a file reaches --fail-on or could not be read completely
(an error verdict always fails: unread bytes may hide anything), 2 on a usage
error or a path that does not exist.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, List, Optional, Sequence

from aisbom import __version__
from aisbom.report import FileReport, Severity, Verdict

_FAIL_ON = {"suspicious": Verdict.SUSPICIOUS, "malicious": Verdict.MALICIOUS}
_COLORS = {
    Verdict.CLEAN: "\033[32m",
    Verdict.SUSPICIOUS: "\033[33m",
    Verdict.ERROR: "\033[35m",
    Verdict.MALICIOUS: "\033[1;31m",
}
_RESET = "\033[0m"


def _use_color(stream: IO[str]) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _paint(text: str, verdict: Verdict, color: bool) -> str:
    return f"{_COLORS[verdict]}{text}{_RESET}" if color else text


def render_text(reports: Sequence[FileReport], out: IO[str], *, color: bool = False, lint: bool = False) -> None:
    """One line per file, its findings indented below."""
    for r in reports:
        out.write(f"{_paint(f'{r.verdict.value:<10}', r.verdict, color)} {r.path}  ({r.format})\n")
        for f in r.findings:
            if f.severity == Severity.INFO:
                continue
            where = f" [{f.member}]" if f.member else ""
            out.write(f"    {f.severity.label:<10} {f.rule}{where}: {f.message}\n")
        if r.dropped_findings:
            out.write(f"    ... and {r.dropped_findings} more findings not listed\n")
        if lint and r.lint is not None:
            for loader, blockers in (("torch.load(weights_only=True)", r.lint["torch_weights_only"]),
                                     ("aisbom.safe_load (in-process)", r.lint["aisbom"])):
                if blockers:
                    out.write(f"    lint: {loader} refuses it because of: {', '.join(blockers)}\n")
                else:
                    out.write(f"    lint: {loader} can load it\n")
    counts = {v: sum(1 for r in reports if r.verdict is v) for v in Verdict}
    summary = ", ".join(f"{n} {v.value}" for v, n in counts.items() if n)
    out.write(f"{len(reports)} file{'s' if len(reports) != 1 else ''}: {summary or 'nothing scanned'}\n")


def render_json(reports: Sequence[FileReport], out: IO[str]) -> None:
    """The report document, one line per file: indenting every record would
    take json's pure-Python encoder, slower than the scan on a big directory."""
    tool = json.dumps({"name": "aisbom", "version": __version__})
    out.write(f'{{\n  "version": 1,\n  "tool": {tool},\n  "files": [')
    for i, r in enumerate(reports):
        out.write(("," if i else "") + "\n    " + json.dumps(r.to_json()))
    out.write("\n  ]\n}\n" if reports else "]\n}\n")


def _cmd_scan(args: argparse.Namespace) -> int:
    from aisbom.config import ConfigError, load_config
    from aisbom.policy import default_policy
    from aisbom.walk import MissingPath, scan_paths

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"aisbom: error: {exc}", file=sys.stderr)
        return 2
    policy = default_policy()
    allow = list(config.allow) + list(args.allow)
    if allow:
        try:
            policy = policy.allowing(allow)
        except (ValueError, TypeError) as exc:
            print(f"aisbom: error: {exc}", file=sys.stderr)
            return 2
    fail_on = args.fail_on or config.fail_on
    try:
        reports = list(
            scan_paths(args.paths, policy=policy, lint=args.lint, exclude=list(config.exclude) + args.exclude,
                       jobs=args.jobs, progress=not args.quiet, hash=args.format != "text", processes=True)
        )
    except MissingPath as exc:
        print(f"aisbom: error: {exc}", file=sys.stderr)
        return 2
    out: IO[str]
    if args.output:
        try:
            out = open(args.output, "w", encoding="utf-8")
        except OSError as exc:
            print(f"aisbom: error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        out = sys.stdout
    try:
        if args.format == "json":
            render_json(reports, out)
        elif args.format == "sarif":
            from aisbom.sarif import render as render_sarif

            render_sarif(reports, out)
        elif args.format == "cyclonedx":
            from aisbom.cyclonedx import render as render_cyclonedx

            render_cyclonedx(reports, out)
        else:
            render_text(reports, out, color=_use_color(out), lint=args.lint)
    finally:
        if out is not sys.stdout:
            out.close()
    threshold = _FAIL_ON[fail_on]
    failed = any(r.verdict.rank >= threshold.rank or r.verdict is Verdict.ERROR for r in reports)
    return 1 if failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from aisbom.demo import run_demo

    return run_demo(sys.stdout, color=_use_color(sys.stdout), keep=args.keep)


def _add_scan_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "scan",
        help="statically scan model files and directories (nothing is loaded or run)",
        description="Scan pickle-based model files without running them. Directories are scanned "
        "recursively, every regular file by its content (.git, .hg and .svn are skipped).",
        epilog="exit status: 0 all clean (or below --fail-on), 1 a file at or above --fail-on or with an "
        "error verdict, 2 usage error or missing path",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    p.add_argument("--format", choices=("text", "json", "sarif", "cyclonedx"), default="text",
                   help="output format: text for people, json (docs/report-format.md), sarif (code scanning), "
                        "cyclonedx (an SBOM); default text")
    p.add_argument("--fail-on", choices=tuple(_FAIL_ON), default=None,
                   help="lowest verdict that makes the exit status 1 (default: suspicious, or fail-on from "
                        "[tool.aisbom])")
    p.add_argument("--config", metavar="FILE",
                   help="a pyproject.toml whose [tool.aisbom] sets allow, fail-on and exclude (default: the "
                        "nearest pyproject.toml with that table)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--lint", action="store_true",
                   help="also say which globals stop torch.load(weights_only=True) and aisbom's loader")
    p.add_argument("--allow", action="append", default=[], metavar="MODULE.QUALNAME",
                   help="treat this exact global as allowed (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="skip paths matching GLOB (repeatable)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                   help="files scanned in parallel (default: number of CPUs)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.set_defaults(func=_cmd_scan)


def _cmd_convert(args: argparse.Namespace) -> int:
    from aisbom.convert import convert
    from aisbom.errors import AisbomError

    try:
        summary = convert(args.input, args.output, allow=args.allow, sandbox=args.sandbox,
                          drop_non_tensors=args.drop_non_tensors)
    except AisbomError as exc:
        print(f"aisbom: refused: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"aisbom: error: {exc}", file=sys.stderr)
        return 2
    dropped = f", dropped {len(summary['dropped'])} non-tensor values" if summary["dropped"] else ""
    print(f"wrote {args.output}: {summary['tensors']} tensors, {summary['bytes']} bytes{dropped}")
    return 0


def _add_convert_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "convert",
        help="load a model safely (the sandbox when needed) and write its tensors as safetensors",
        description="Load IN through aisbom.safe_load (in-process when clean, in the sandbox when it needs "
        "globals outside the allowlist) and write its tensors to OUT as safetensors. OUT is written to a "
        "temporary file and renamed into place, so it is never half-written.",
        epilog="exit status: 0 written, 1 refused (malicious or malformed input), 2 usage or I/O error",
    )
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--allow", action="append", default=[], metavar="MODULE.QUALNAME",
                   help="treat this exact global as allowed (repeatable)")
    p.add_argument("--sandbox", choices=("auto", "never", "always"), default="auto",
                   help="auto (default): sandbox files that need more than the allowlist; never: refuse them")
    p.add_argument("--drop-non-tensors", action="store_true",
                   help="leave out values that are not tensors instead of refusing")
    p.set_defaults(func=_cmd_convert)


def _add_demo_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "demo",
        help="write a benign checkpoint and an inert malicious pickle to a temp folder and scan both",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp folder and print its path")
    p.set_defaults(func=_cmd_demo)


def _build_parser(with_sandbox: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aisbom", description="Open untrusted pickle-based model files safely.")
    parser.add_argument("--version", action="version", version=f"aisbom {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_scan_parser(sub)
    _add_demo_parser(sub)
    _add_convert_parser(sub)
    if with_sandbox:
        from aisbom import sandbox_cli

        sandbox_cli.add_sandbox_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The sandbox's parser imports the jail module: only when it may be asked for.
    parser = _build_parser(with_sandbox=not argv or argv[0] not in ("scan", "demo", "convert"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("aisbom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
