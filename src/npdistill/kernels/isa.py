"""The instruction set the compiled direct convolution runs (ext/direct_conv.h): the most
this build and CPU run (AVX-512F, else AVX2 + FMA, else none: im2col), or less where capped
— ``NPDISTILL_ISA=avx512|avx2|baseline`` or ``use_isa(...)`` — so that one machine can
measure each path beside the others (bench/train_speed.py --isa). A cap above what the
machine runs changes nothing; "baseline" leaves the direct kernels out (im2col + BLAS).
The pooling kernels pick their own set where they load (GCC's target clones) and are not
capped. The two sets give the same bits (each output is the same sequence of fused
multiply-adds), so a cap changes speed, not results."""
import contextlib
import os

ISAS = ("avx512", "avx2", "baseline")           # most first
LEVELS = {name: len(ISAS) - 1 - i for i, name in enumerate(ISAS)}     # avx512 2 ... baseline 0
_cap = None                                     # use_isa's; None: NPDISTILL_ISA, else none


def _checked(name, variable=None):
    if name not in ISAS:
        said = f"{variable}={name!r}" if variable else f"isa {name!r}"
        raise ValueError(f"{said}: expected one of {ISAS}")
    return name


def use_isa(name):
    """Cap the direct kernels at ``name`` ("avx512", "avx2" or "baseline"; None: back to
    NPDISTILL_ISA, or no cap). Overrides NPDISTILL_ISA."""
    global _cap
    _cap = None if name is None else _checked(name)


@contextlib.contextmanager
def using_isa(name):
    """``with using_isa("avx2"):`` runs the block capped at that set, then restores the cap."""
    global _cap
    previous = _cap
    use_isa(name)
    try:
        yield name
    finally:
        _cap = previous


def cap():
    """The cap in force: use_isa's, else NPDISTILL_ISA's (a ValueError naming the variable
    for a value not in ISAS), else None."""
    if _cap is not None:
        return _cap
    requested = os.environ.get("NPDISTILL_ISA")
    return _checked(requested, "NPDISTILL_ISA") if requested else None


def capped(level):
    """A machine's level (2 AVX-512, 1 AVX2, 0 none) under the cap in force."""
    chosen = cap()
    return level if chosen is None else min(level, LEVELS[chosen])


def name(level):
    """The set of a level: 2 "avx512", 1 "avx2", 0 "baseline"."""
    return ISAS[len(ISAS) - 1 - level]
