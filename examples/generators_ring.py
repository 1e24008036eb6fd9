"""The picture of docs/generators.md: generators on the 8-mode ring of research/aeot.md §5.

The ring target (8 Gaussian modes at radius 2, sd 0.1, 512 training points), then 10,000 samples
from smoothed OT generators at ε = 1e-3, 1e-2 and 5e-2, from the hard map T_0 (ε = 0) and from a
Gaussian KDE with Scott's bandwidth, side by side. Each panel's title gives the fraction of
samples far from every mode (Mahalanobis² > χ²₂(0.999) = 13.82; the truth has 0.1 %).

Uses ``dp_core.generators.fit_generator`` directly (no service). Needs matplotlib (the ``bench``
extra: ``pip install -e '.[bench]'``); runs in well under a minute::

    .venv/bin/python examples/generators_ring.py [--out docs/generators-ring.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

from dp_core.generators import fit_generator

OUT = Path(__file__).resolve().parents[1] / "docs" / "generators-ring.png"
CENTRES = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)
SD = 0.1
FAR = 13.82  # χ²₂(0.999)
N_TRAIN, N_SAMPLES = 512, 10_000
FIT = {"samples": 1 << 14, "tolerance": 1e-3, "seed": 1}
MAX_STEPS = {0.0: 300}
"""Energy evaluations per fit (default 2000): the hard map's Adam stage plateaus early."""


def ring(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of the ring: a mode chosen uniformly, plus isotropic noise of sd 0.1."""
    return CENTRES[rng.integers(0, 8, n)] + SD * rng.standard_normal((n, 2))


def far_fraction(samples: np.ndarray) -> float:
    """Fraction of samples whose Mahalanobis² to every mode exceeds χ²₂(0.999)."""
    d2 = ((samples[:, None, :] - CENTRES[None]) ** 2).sum(-1) / SD**2
    return float((d2.min(axis=1) > FAR).mean())


def kde(train: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian KDE sampler with Scott's per-coordinate bandwidth."""
    bandwidth = train.shape[0] ** (-1 / 6) * train.std(0, ddof=1)
    return train[rng.integers(0, len(train), n)] + bandwidth * rng.standard_normal((n, 2))


def panels(train: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
    """(title, points, seconds) of every panel: the training points, then each generator."""
    out: list[tuple[str, np.ndarray, float]] = [("ring target (512 points)", train, 0.0)]
    for label, epsilon in (("ε = 1e-3", 1e-3), ("ε = 1e-2", 1e-2), ("ε = 5e-2", 5e-2),
                           ("hard map T₀ (ε = 0)", 0.0)):  # fmt: skip
        start = time.perf_counter()
        generator = fit_generator(
            train, epsilon=epsilon, max_steps=MAX_STEPS.get(epsilon, 2000), **FIT
        )
        out.append((label, generator.sample(N_SAMPLES, 3), time.perf_counter() - start))
    start = time.perf_counter()
    samples = kde(train, N_SAMPLES, np.random.default_rng(6))
    out.append(("KDE, Scott's bandwidth", samples, time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"PNG to write (default {OUT})")
    args = parser.parse_args()

    train = ring(N_TRAIN, np.random.default_rng(0))
    figure = Figure(figsize=(12, 8))
    axes = figure.subplots(2, 3, sharex=True, sharey=True)
    for ax, (title, points, seconds) in zip(axes.flat, panels(train), strict=True):
        size = 4.0 if len(points) == N_TRAIN else 0.5
        ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6, color="tab:blue", linewidths=0)
        ax.scatter(*CENTRES.T, s=12, marker="x", color="tab:red", linewidths=1)
        if len(points) != N_TRAIN:
            title += f"\nfar from every mode: {100 * far_fraction(points):.1f} %"
            print(f"{title.splitlines()[0]:<24} {seconds:6.2f} s  {title.splitlines()[1]}")
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
    figure.suptitle(f"{N_SAMPLES:,} samples per generator (red x: the true modes)")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
