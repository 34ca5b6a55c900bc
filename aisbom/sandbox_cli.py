"""`aisbom sandbox [options] -- CMD ARGS...`: run any command in aisbom's jail.

The current folder is visible read-only, /tmp is private (and vanishes with the
jail), there is no network, and nothing else of the machine is visible but the
system libraries and the running Python. Exit status: the command's own, 128+N
if signal N killed it, 124 on --timeout, 125 when the jail cannot be built, 126
when the command cannot be executed, 127 when it is not found.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, List, Optional

from aisbom import jail

_EPILOG = """\
exit status: the command's; 128+N if signal N killed it; 124 on timeout;
125 if the jail cannot be built (nothing ran); 126 cannot execute; 127 not found.
levels: full (namespaces + Landlock + seccomp, the default) or no-userns
(Landlock + seccomp without namespaces, accepted only with --allow-degraded).
"""


def _size(value: str) -> int:
    try:
        return jail.parse_size(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"timeout must be positive: {value!r}")
    return seconds


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


def _default_memory() -> Optional[int]:
    """Half the machine's memory: a runaway allocation fails before the host suffers."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return None


def add_sandbox_parser(subparsers: Any) -> None:
    """Register `aisbom sandbox` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "sandbox",
        help="run a command in the jail (cwd read-only, private /tmp, no network)",
        description=(
            "Run CMD in aisbom's jail: the current folder read-only, a private /tmp, "
            "no network, no access to the rest of the machine, no new programs started "
            "from inside."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="aisbom sandbox [options] -- CMD [ARGS...]",
    )
    parser.add_argument("--timeout", type=_seconds, metavar="S",
                        help="kill the command and everything it started after S seconds (exit 124)")
    parser.add_argument("--rw", action="append", default=[], metavar="DIR",
                        help="make DIR writable in the jail (repeatable)")
    parser.add_argument("--ro", action="append", default=[], metavar="PATH",
                        help="make PATH visible read-only in the jail (repeatable)")
    parser.add_argument("--mem", type=_size, metavar="SIZE",
                        help="memory limit (RLIMIT_DATA), e.g. 512M, 4G (default: half the RAM)")
    parser.add_argument("--nproc", type=_positive_int, metavar="N",
                        help="most processes and threads at once (default 256)")
    parser.add_argument("--fsize", type=_size, metavar="SIZE",
                        help="largest file the command may write, memfds included "
                             "(default: the memory limit)")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--allow-degraded", action="store_true",
                       help="accept the no-userns level when user namespaces are unavailable")
    level.add_argument("--min-level", choices=jail.LEVELS, default=None,
                       help="weakest level accepted (default: full)")
    parser.add_argument("-v", "--verbose", "--print-level", dest="verbose", action="store_true",
                        help="print the level the jail reached on stderr")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD",
                        help="the command and its arguments, after --")
    parser.set_defaults(func=run_sandbox)


def _say(message: str) -> None:
    print(f"aisbom sandbox: {message}", file=sys.stderr, flush=True)


def run_sandbox(args: argparse.Namespace) -> int:
    command: List[str] = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        _say("no command given (usage: aisbom sandbox [options] -- CMD [ARGS...])")
        return 2
    min_level = args.min_level or ("no-userns" if args.allow_degraded else "full")
    memory = args.mem if args.mem is not None else _default_memory()
    cwd = os.getcwd()
    try:
        proc = jail.spawn(
            command,
            ro_paths=args.ro,
            rw_paths=args.rw,
            timeout=args.timeout,
            memory=memory,
            nproc=args.nproc,
            fsize=args.fsize if args.fsize is not None else memory,
            min_level=min_level,
            cwd=cwd,
        )
    except jail.JailUnavailable as e:
        hint = "" if min_level != "full" else "; --allow-degraded accepts the weaker no-userns level"
        _say(f"cannot build the jail: {e}{hint}")
        return jail.EXIT_SETUP
    except jail.JailExecError as e:
        _say(str(e))
        return e.exit_code
    except jail.JailError as e:
        _say(f"cannot build the jail: {e}")
        return jail.EXIT_SETUP
    except (OSError, ValueError) as e:
        _say(f"cannot start: {e}")
        return jail.EXIT_SETUP
    if args.verbose:
        _say(f"level {proc.level} ({' '.join(proc.features)})")
    try:
        result = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait()
        except jail.JailError:
            pass
        _say("interrupted; the jail was killed")
        return 130
    except jail.JailError as e:
        _say(f"the jail failed: {e}")
        return jail.EXIT_SETUP
    if result.timed_out:
        _say(f"timed out after {args.timeout:g} s; the command and everything it started were killed")
    elif result.terminated:
        how = f"by {signal.Signals(result.signal).name}" if result.signal else "from outside"
        _say(f"stopped {how}; the jail was killed")
    return result.exit_code
