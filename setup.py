"""Build hook for the optional native kernels (odesr/_native.c); metadata is in pyproject.toml.

The extension is ``optional``: without a C compiler the install still succeeds and odesr uses its
torch path (see odesr.native)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "odesr._native",
            sources=["odesr/_native.c"],
            extra_compile_args=[
                "-O3",
                "-std=c11",
                "-fno-math-errno",
                "-Wno-psabi",
                "-ffp-contract=off",
            ],
            optional=True,
        )
    ]
)
