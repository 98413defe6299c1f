"""PNG plots of the full benchmark runs (matplotlib, Agg): written to ``benchmarks/``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _procs import percentile

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
        ys = [percentile(ordered, q) for q in qs]
        ax.plot([str(q) for q in qs], ys, marker="o", label=f"{label} (n={len(ordered)})")
    return _save(fig, ax, "percentile", "added latency (ms)", title, name)


def over_time(minutes: Sequence[float], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
              name: str) -> Path:
    """Lines over time (minutes), e.g. RSS and open tasks sampled each minute."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        ax.plot(list(minutes), list(values), marker=".", label=label)
    return _save(fig, ax, "minutes", ylabel, title, name)


def _save(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, name: str) -> Path:
    """Label, grid and legend, then write ``benchmarks/<name>`` and free the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path = HERE / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path
