"""PNG plots of the full benchmark runs (matplotlib, Agg): written to ``benchmarks/``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_percentiles(series: Mapping[str, Sequence[float]], title: str, name: str) -> Path:
    """One line per path: added latency (ms) at percentiles 50..99.9."""
    plt = _pyplot()
    qs = [50, 75, 90, 95, 99, 99.9]
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        ordered = sorted(values)
        if not ordered:
            continue
        ys = [ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] for q in qs]
        ax.plot([str(q) for q in qs], ys, marker="o", label=f"{label} (n={len(ordered)})")
    ax.set_xlabel("percentile")
    ax.set_ylabel("added latency (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path = HERE / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def over_time(minutes: Sequence[float], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
              name: str) -> Path:
    """Lines over time (minutes), e.g. RSS and open tasks sampled each minute."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        ax.plot(list(minutes), list(values), marker=".", label=label)
    ax.set_xlabel("minutes")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path = HERE / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
