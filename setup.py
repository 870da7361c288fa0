"""Build step for the one compiled kernel (everything else is in pyproject.toml).

``cnnkit.functional._native_conv`` is optional: without a C compiler, or where the
compiler lacks x86 vector intrinsics, the build skips it and cnnkit runs its NumPy code
instead (see ``cnnkit/functional/_native.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cnnkit.functional._native_conv",
            sources=[
                "src/cnnkit/functional/_native_conv.c",
                "src/cnnkit/functional/_native_avx512.c",
                "src/cnnkit/functional/_native_avx2.c",
                "src/cnnkit/functional/_native_bn.c",
            ],
            depends=["src/cnnkit/functional/_native_kernels.h"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
