"""Start a command the way a hostile or restricted machine would (test helper).

    python harness.py [--fix-traversal PATH]... [--as-nobody]
                      [--deny-userns clone|mount] -- CMD [ARGS...]

--fix-traversal PATH  (root) in a private mount namespace, make PATH reachable by
                      other users: a directory on the way that they may not enter
                      (e.g. /root, mode 0700) is covered by a tmpfs holding only the
                      entry on the way, bound back. Nothing changes on the host.
--as-nobody           (root) drop to uid/gid 65534 without supplementary groups.
--deny-userns clone   a seccomp filter makes clone/unshare with CLONE_NEWUSER fail
                      with EPERM (and clone3 with ENOSYS), like Docker's profile.
--deny-userns mount   user namespaces can be created but mount() fails with EPERM,
                      like Ubuntu's AppArmor restriction of unprivileged userns.
Then exec CMD.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import stat
import struct
import sys
from typing import Dict, List, Set

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
NR = {"clone": 56, "unshare": 272, "clone3": 435, "mount": 165}  # x86_64
EPERM, ENOSYS = 1, 38

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    check(
        libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                   ctypes.c_ulong(flags), data.encode() if data else None),
        f"mount {target}",
    )


def blocked_dirs(paths: List[str]) -> Dict[str, Set[str]]:
    """For each path, the first ancestor others cannot enter, and the entry needed below it."""
    blocked: Dict[str, Set[str]] = {}
    for path in paths:
        parts = [p for p in os.path.abspath(path).split("/") if p]
        for i in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:i])
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                blocked.setdefault(ancestor, set()).add(parts[i])
                break
    return blocked


def fix_traversal(paths: List[str]) -> None:
    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount("none", "/", "", MS_REC | MS_PRIVATE, "")
    for _ in range(8):
        blocked = blocked_dirs(paths)
        if not blocked:
            return
        for directory, entries in blocked.items():
            fds = {e: os.open(os.path.join(directory, e), os.O_PATH) for e in entries}
            mount("tmpfs", directory, "tmpfs", 0, "mode=0755")
            for entry, fd in fds.items():
                target = os.path.join(directory, entry)
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.mkdir(target)
                else:
                    open(target, "w").close()
                mount(f"/proc/self/fd/{fd}", target, "", MS_BIND | MS_REC, "")
                os.close(fd)


def bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def deny_userns(mode: str) -> None:
    if platform.machine() != "x86_64":
        raise SystemExit("harness: --deny-userns supports x86_64 only")
    LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
    prog = [bpf(LD, 0, 0, 4), bpf(JEQ, 1, 0, AUDIT_ARCH_X86_64), bpf(RET, 0, 0, SECCOMP_RET_ALLOW),
            bpf(LD, 0, 0, 0)]
    if mode == "clone":
        for name in ("clone", "unshare"):
            prog += [bpf(JEQ, 0, 4, NR[name]), bpf(LD, 0, 0, 16), bpf(JSET, 0, 1, CLONE_NEWUSER),
                     bpf(RET, 0, 0, SECCOMP_RET_ERRNO | EPERM), bpf(RET, 0, 0, SECCOMP_RET_ALLOW)]
        prog += [bpf(JEQ, 0, 1, NR["clone3"]), bpf(RET, 0, 0, SECCOMP_RET_ERRNO | ENOSYS)]
    elif mode == "mount":
        prog += [bpf(JEQ, 0, 1, NR["mount"]), bpf(RET, 0, 0, SECCOMP_RET_ERRNO | EPERM)]
    else:
        raise SystemExit(f"harness: unknown --deny-userns mode {mode}")
    prog.append(bpf(RET, 0, 0, SECCOMP_RET_ALLOW))
    code = b"".join(prog)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
          "prctl(SECCOMP)")


def main(argv: List[str]) -> None:
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    traversal: List[str] = []
    as_nobody = False
    deny = ""
    i = 0
    while i < len(options):
        if options[i] == "--fix-traversal":
            traversal.append(options[i + 1])
            i += 2
        elif options[i] == "--as-nobody":
            as_nobody = True
            i += 1
        elif options[i] == "--deny-userns":
            deny = options[i + 1]
            i += 2
        else:
            raise SystemExit(f"harness: unknown option {options[i]}")
    if traversal:
        fix_traversal(traversal)
    if as_nobody:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
    if deny:
        deny_userns(deny)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
