"""Build step for the one compiled kernel (everything else is in pyproject.toml).

``cnnkit.functional._native_conv`` is optional: without a C compiler, or on a CPU
family whose headers lack AVX-512 intrinsics, the build skips it and cnnkit runs its
NumPy code instead (see ``cnnkit/functional/_native.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cnnkit.functional._native_conv",
            sources=["src/cnnkit/functional/_native_conv.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
