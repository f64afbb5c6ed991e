"""Build of xentcore's one C extension; every other setting lives in pyproject.toml.

``xentcore._rowops`` holds row kernels that numpy can only do with a function call per row
(argmax and max of each row, row sums) and the fused softmax cross-entropy of logits rows
(``xentcore/_fused.c``: one pass per row, a vectorised exp, compiled for AVX-512, AVX2 and the
baseline with the one for the CPU picked at load time). It is optional: without a C compiler
the build goes on without it and ``xentcore`` uses its numpy fallback, which gives the same
results (within the contract's 1e-6) more slowly (``xentcore._kernels.NATIVE`` says which is
in use).
"""

from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """GCC / Clang: -O3 even when a CFLAGS variable replaced Python's own flags (the kernels
    are vector code: unoptimised, they run 5-10 times slower), and no -Wpsabi notes for the
    vector types of _fused_body.h (its helpers are inlined: no call passes them by value
    across an ABI boundary)."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = [*ext.extra_compile_args, "-O3", "-Wno-psabi"]
        super().build_extensions()


kwargs: dict[str, Any] = {"cmdclass": {"build_ext": BuildExt}}

setup(
    ext_modules=[
        Extension(
            "xentcore._rowops",
            sources=[
                "xentcore/_rowops.c",
                "xentcore/_fused.c",
                "xentcore/_fused_v3.c",
                "xentcore/_fused_v4.c",
                "xentcore/_fused_small.c",
                "xentcore/_lists.c",
                "xentcore/_sums.c",
            ],
            depends=[
                "xentcore/_fused.h",
                "xentcore/_fused_body.h",
                "xentcore/_lists.h",
                "xentcore/_sums.h",
            ],
            optional=True,
        )
    ],
    **kwargs,
)
