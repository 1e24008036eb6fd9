"""Particle flows composed of engine primitives, and the one run loop they share.

- ``base``  run loop (progress, cancellation, public traces) and run records
- ``shk``   SHK birth–death Langevin sampler for the exponential mechanism
"""

from dp_core.flows.base import RunDescription, RunResult, run_steps
from dp_core.flows.shk import SHKInfo, SHKSampler, SHKState, default_bandwidth, sample_shk

__all__ = [
    "RunDescription",
    "RunResult",
    "SHKInfo",
    "SHKSampler",
    "SHKState",
    "default_bandwidth",
    "run_steps",
    "sample_shk",
]
