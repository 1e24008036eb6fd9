"""privflow numerical and privacy core.

Map of the package (nothing here compiles, connects or reads the environment on import):

- ``dp_core.errors``    the DPCoreError tree (InvalidParameter(field), Cancelled, NumericalFailure)
- ``dp_core.types``     Domain and frozen result records shared by engine callers
- ``dp_core.engine``    the only Numba code: fused pairwise kernels, KDE, birth-death, MALA, RNG
- ``dp_core.flows``     particle flows composed of engine primitives, and the one run loop
- ``dp_core.reference`` slow, obviously correct NumPy references (tests and benchmarks only)
"""
