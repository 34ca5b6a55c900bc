"""Build aisbom._core from csrc/*.c and the sandbox helper executable from csrc/jail.c.

Environment knobs (for developers, not users):
  AISBOM_SANITIZE=address,undefined   build with those sanitizers (see docs/fuzzing.md)
  AISBOM_WERROR=1                     turn compiler warnings into errors
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
JAIL_SOURCE = os.path.join("csrc", "jail.c")
JAIL_EXE = "aisbom-jail"


def _flags():
    cflags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden"]
    ldflags = []
    if os.environ.get("AISBOM_WERROR") == "1":
        cflags.append("-Werror")
    sanitize = os.environ.get("AISBOM_SANITIZE")
    if sanitize:
        cflags += ["-O1", "-g", "-fno-omit-frame-pointer", f"-fsanitize={sanitize}",
                   "-fno-sanitize-recover=undefined"]
        ldflags += [f"-fsanitize={sanitize}"]
    return cflags, ldflags


CFLAGS, LDFLAGS = _flags()
core_sources = sorted(
    p for p in glob.glob(os.path.join("csrc", "*.c")) if os.path.basename(p) != "jail.c"
)


class BuildWithJail(build_ext):
    """Also link the sandbox helper: a small standalone executable shipped in the package."""

    def run(self):
        super().run()
        if not sys.platform.startswith("linux") or not os.path.exists(JAIL_SOURCE):
            return
        out_dir = os.path.join(HERE if self.inplace else self.build_lib, "aisbom")
        os.makedirs(out_dir, exist_ok=True)
        objects = self.compiler.compile(
            [JAIL_SOURCE], output_dir=self.build_temp, extra_postargs=CFLAGS
        )
        self.compiler.link_executable(
            objects, JAIL_EXE, output_dir=out_dir, extra_postargs=LDFLAGS
        )


setup(
    ext_modules=[
        Extension(
            "aisbom._core",
            sources=core_sources,
            include_dirs=["csrc"],
            extra_compile_args=CFLAGS,
            extra_link_args=LDFLAGS,
        )
    ],
    cmdclass={"build_ext": BuildWithJail},
)
