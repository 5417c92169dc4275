"""Build the Cython kernels in ext/ into npdistill._ext.* (the package lives in src/).

One dict maps extension names to sources; OpenMP is used where the compiler
accepts -fopenmp and left out (serial loops) where it does not.
"""
import os
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools._distutils.ccompiler import new_compiler
from setuptools._distutils.errors import CompileError, LinkError
from setuptools._distutils.sysconfig import customize_compiler

EXTENSIONS = {
    "npdistill._ext.conv": ["ext/conv.pyx"],
    "npdistill._ext.saliency": ["ext/saliency.pyx"],
    "npdistill._ext.pool": ["ext/pool.pyx"],
    "npdistill._ext.cw": ["ext/cw.pyx"],
    "npdistill._ext.gemm": ["ext/gemm.pyx"],
    "npdistill._ext.winograd": ["ext/winograd.pyx"],
    "npdistill._ext.direct": ["ext/direct.pyx"],
    "npdistill._ext.relu": ["ext/relu.pyx"],
    "npdistill._ext.threads": ["ext/threads.pyx"],
}

# the C headers an extension includes: a change to one rebuilds it
HEADERS = {
    "npdistill._ext.direct": ["ext/direct_conv.h", "ext/direct_tile.h"],
    "npdistill._ext.pool": ["ext/pool_kernels.h"],
}


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or ([], []) where it is absent."""
    if os.environ.get("NPDISTILL_NO_OPENMP"):
        return [], []
    flag = "/openmp" if sys.platform == "win32" else "-fopenmp"
    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "omp_probe.c")
        with open(source, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        try:
            objects = compiler.compile([source], output_dir=tmp, extra_postargs=[flag])
            compiler.link_executable(objects, os.path.join(tmp, "omp_probe"),
                                     extra_postargs=[flag])
        except (CompileError, LinkError):
            print("npdistill: OpenMP not available, building serial kernels")
            return [], []
    return [flag], ([] if sys.platform == "win32" else [flag])


def extensions():
    compile_args, link_args = openmp_flags()
    # -g0 after Python's own CFLAGS (which carry -g): no debug info, 1.4 MB -> 0.26 MB a module
    optimise = [] if sys.platform == "win32" else ["-O3", "-g0"]
    # NPDISTILL_NO_X86_KERNELS=1: a build without the x86 intrinsics (the direct
    # convolution), as on aarch64: the portable path (im2col + BLAS) everywhere
    macros = [("NPD_NO_X86_KERNELS", "1")] if os.environ.get("NPDISTILL_NO_X86_KERNELS") else []
    modules = [
        Extension(name, sources, extra_compile_args=optimise + compile_args,
                  extra_link_args=link_args, define_macros=macros,
                  depends=HEADERS.get(name, []))
        for name, sources in EXTENSIONS.items()
    ]
    return cythonize(modules, include_path=["ext"], language_level=3)


# the extensions compiled side by side, one per core (a cold build: 82 s -> 50 s on 2 cores)
setup(ext_modules=extensions(), options={"build_ext": {"parallel": os.cpu_count() or 1}})
