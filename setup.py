"""Build of xentcore's one C extension; every other setting lives in pyproject.toml.

``xentcore._rowops`` holds row kernels (argmax and max of each row) that numpy can only do with
a function call per row. It is optional: without a C compiler the build goes on without it and
``xentcore`` uses its numpy fallback, which gives the same results more slowly
(``xentcore._kernels.NATIVE`` says which is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xentcore._rowops",
            sources=["xentcore/_rowops.c"],
            optional=True,
        )
    ]
)
