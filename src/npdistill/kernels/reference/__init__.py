"""The NumPy references: each module here is the specification of the kernels of the same
name, compiled in npdistill/_ext (ext/<name>.pyx) and, for the GPU, in npdistill/cuda, and
the "numpy" backend itself. The tests hold every compiled kernel equal to its reference.

``cuda_elementwise`` and ``cuda_dense`` specify device plumbing only the CUDA backend has
(the CPU path runs the same maths through nn/ and ``kernels.matmul``).
"""
