"""Particle flows composed of engine primitives, and the one run loop they share.

- ``base``  run loop (progress, cancellation, public traces) and run records
- ``shk``   SHK birth–death Langevin sampler for the exponential mechanism
- ``witness``, ``mmd``, ``drmmd``   MMD flow with noise injection and the de-regularised MMD flow
- ``student_teacher``, ``muon``     the two-layer student–teacher task; regularised / standard Muon
"""

from dp_core.flows.base import RunDescription, RunResult, run_steps
from dp_core.flows.drmmd import run_drmmd_flow
from dp_core.flows.mmd import run_mmd_flow
from dp_core.flows.muon import run_muon_flow
from dp_core.flows.shk import SHKInfo, SHKSampler, SHKState, default_bandwidth, sample_shk
from dp_core.flows.student_teacher import StudentTeacherTask
from dp_core.flows.witness import NoiseSchedule, PointKernel

__all__ = [
    "NoiseSchedule",
    "PointKernel",
    "RunDescription",
    "RunResult",
    "SHKInfo",
    "SHKSampler",
    "SHKState",
    "StudentTeacherTask",
    "default_bandwidth",
    "run_drmmd_flow",
    "run_mmd_flow",
    "run_muon_flow",
    "run_steps",
    "sample_shk",
]
