"""Figures a person would rather look at than read (matplotlib, Agg backend, PNG files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_clouds(clouds, colors, titles, path, *, cmap="tab20", suptitle=None, point_size=4.0, up_axis=2,
                   vmax=None):
    """A row (or grid) of 3D scatter plots, one cloud each, coloured by integer labels.

    clouds: list of (N, 3) arrays; colors: list of (N,) integer arrays (or None). One colour scale
    (0..vmax, default the largest label over all clouds) so equal labels look alike everywhere.
    """
    if vmax is None:
        vmax = max([int(np.max(c)) for c in colors if c is not None and len(c)] or [1])
    plt = _plt()
    n = len(clouds)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = plt.figure(figsize=(3.4 * cols, 3.4 * rows))
    for i, (pts, col, title) in enumerate(zip(clouds, colors, titles)):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        pts = np.asarray(pts)
        axes = [a for a in range(3) if a != up_axis] + [up_axis]
        ax.scatter(pts[:, axes[0]], pts[:, axes[1]], pts[:, axes[2]], c=col, cmap=cmap, s=point_size,
                   linewidths=0, vmin=0, vmax=max(1, vmax))
        ax.set_title(title, fontsize=9)
        ax.set_box_aspect((1, 1, 1))
        lim = np.abs(pts).max() if len(pts) else 1.0
        for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            setter(-lim, lim)
        ax.view_init(elev=20, azim=-60)
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def bar_chart(labels, values, errors, path, *, ylabel, title):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(labels), 3.6))
    colors = ["#555555"] + ["#1f77b4"] * (len(labels) - 1)
    ax.bar(range(len(labels)), values, yerr=errors, color=colors[: len(labels)], capsize=4)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def pareto_plot(points, path, *, xlabel="GMACs per cloud", ylabel="accuracy (%)", title=""):
    """points: list of (label, gmacs, score, score_std or None)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for label, x, y, err in points:
        ax.errorbar([x], [y], yerr=[err] if err else None, fmt="o", capsize=3, label=label)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
