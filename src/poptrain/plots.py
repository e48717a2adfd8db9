"""Figures of a run, drawn from its records alone (matplotlib, Agg; no display needed).

* ``population.png``: the population's development, as in the paper's GAN and FuN figures:
  every member's score over its own steps (or wall time); an exploit starts a new stretch of
  the member's curve from the state it copied (a dashed link when the source's step
  differs); the winner's lineage is highlighted and its best state starred.
* ``schedule.png``: the winner's score and hyperparameters by the age of its weights, one
  panel per hyperparameter, shaded by the member that trained each stretch.
* ``lineage.png``: who copied whom, when: one row per member, an arrow per exploit, the
  winner's lineage in bold.
* ``hparams.png``: the hyperparameters explored against the score, every evaluation of the
  run, coloured by step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .history import Copy, History, Lineage, Start, history
from .results import Result
from .space import Choice, Constant, Distribution, IntUniform, LogUniform

__all__ = ["PLOTS", "plot_run"]

PLOTS = ("population", "schedule", "lineage", "hparams")

LINEAGE_COLOUR = "#f2b705"  # the highlighter under the winner's path
BEST_COLOUR = "#c0392b"
FAILURE_COLOUR = "#d62728"


def plot_run(
    result: Result, out_dir: str | Path, *, x: str = "step", dpi: int = 150
) -> dict[str, Path]:
    """Write the run's figures into ``out_dir`` (created); return ``{name: path}``."""
    if x not in ("step", "time"):
        raise ValueError(f"x must be 'step' or 'time', not {x!r}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    hist = history(result)
    lineage = hist.best_lineage()
    figures = {
        "population": _population(hist, lineage, x),
        "schedule": _schedule(hist, lineage),
        "lineage": _lineage_tree(hist, lineage, x),
        "hparams": _hparams(hist),
    }
    paths = {}
    for name, figure in figures.items():
        path = folder / f"{name}.png"
        figure.savefig(path, dpi=dpi)
        paths[name] = path
    return paths


# -- helpers ---------------------------------------------------------------------------
def _member_colours(members: Sequence[int]) -> dict[int, Any]:
    """Distinct colours with no yellow or orange, which the lineage highlighter uses."""
    from matplotlib import colormaps

    if len(members) <= len(_PALETTE):
        return {m: _PALETTE[i] for i, m in enumerate(members)}
    cmap = colormaps["viridis"]
    return {m: cmap(0.82 * i / (len(members) - 1)) for i, m in enumerate(members)}


#: tab10 without its orange and olive.
_PALETTE = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def _xs(states: Sequence[Start], x: str, t0: float) -> list[float]:
    return [s.step if x == "step" else s.time - t0 for s in states]


def _ys(states: Sequence[Start]) -> list[float]:
    return [math.nan if s.score is None else s.score for s in states]


def _x_label(x: str) -> str:
    return "member's training step" if x == "step" else "wall time since the first evaluation (s)"


def _score_label(hist: History) -> str:
    config = hist.result.config
    better = "higher" if config.mode == "max" else "lower"
    return f"{config.metric} ({better} is better)"


def _robust_ylim(ax: Axes, values: Sequence[float], mode: str) -> None:
    """Keep rare blow-ups (a diverged member) from flattening everyone else's curve."""
    finite = np.array([v for v in values if math.isfinite(v)])
    if finite.size < 20:
        return
    low, high = np.percentile(finite, [2, 98])
    full_low, full_high = finite.min(), finite.max()
    span = high - low
    if span <= 0 or (full_high - full_low) < 3 * span:
        return
    if mode == "max":
        ax.set_ylim(low - 0.1 * span, full_high + 0.05 * span)
    else:
        ax.set_ylim(full_low - 0.05 * span, high + 0.1 * span)


def _legend_outside(ax: Axes, handles: list[Any], title: str | None = None) -> None:
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8,
        title=title,
        title_fontsize=8,
    )


def _t0(hist: History) -> float:
    return min((p.time for p in hist.points()), default=0.0)


def _best_text(hist: History) -> str:
    best = hist.result.best
    if best is None:
        return "no best state yet"
    metric = hist.result.config.metric
    return f"best {metric} = {best.score:.4g} (member {best.member}, step {best.step})"


# -- population development --------------------------------------------------------------
def _population(hist: History, lineage: Lineage | None, x: str) -> Figure:
    result = hist.result
    members = sorted(hist.stretches)
    colours = _member_colours(members)
    t0 = _t0(hist)
    fig = Figure(figsize=(10, 5.2), layout="constrained")
    ax = fig.add_subplot()
    values: list[float] = []

    if lineage is not None:
        paths = [
            piece.stretch.states(until_time=piece.end.time, until_step=piece.end.step)
            for piece in lineage.pieces
        ]
        paths += [link for copy in lineage.copies if (link := _link_states(copy)) is not None]
        for states in paths:  # the highlighter under the winner's path, copies included
            ax.plot(
                _xs(states, x, t0),
                _ys(states),
                color=LINEAGE_COLOUR,
                lw=7,
                alpha=0.55,
                solid_capstyle="round",
                zorder=1,
            )

    for member in members:
        for stretch in hist.stretches[member]:
            states = [s for s in stretch.states() if s.score is not None]
            if not states:
                continue
            values += [s.score for s in states if s.score is not None]
            ax.plot(
                _xs(states, x, t0), _ys(states), color=colours[member], lw=1.2, alpha=0.9, zorder=3
            )
            origin = stretch.origin
            if origin is not None and origin.kind == "exploit":
                link = _link_states(origin)
                if link is not None:
                    ax.plot(
                        _xs(link, x, t0),
                        _ys(link),
                        color=colours[member],
                        lw=0.9,
                        ls=(0, (2, 2)),
                        alpha=0.8,
                        zorder=2,
                    )
                ax.plot(
                    _xs([stretch.start], x, t0),
                    _ys([stretch.start]),
                    marker="o",
                    ms=3.5,
                    mfc="white",
                    mec=colours[member],
                    mew=1.0,
                    ls="none",
                    zorder=4,
                )
        failed = [p for s in hist.stretches[member] for p in s.points if p.score is None]
        if failed:
            ys = [_score_before(hist, member, p.time) for p in failed]
            xs = [p.step if x == "step" else p.time - t0 for p in failed]
            ax.plot(xs, ys, marker="x", color=FAILURE_COLOUR, ms=7, mew=1.6, ls="none", zorder=5)

    best = result.best
    if best is not None and lineage is not None:
        end = lineage.pieces[-1].end
        ax.plot(
            _xs([end], x, t0),
            _ys([end]),
            marker="*",
            ms=15,
            color=BEST_COLOUR,
            mec="black",
            mew=0.6,
            ls="none",
            zorder=6,
        )

    _robust_ylim(ax, values, result.config.mode)
    ax.set_xlabel(_x_label(x))
    ax.set_ylabel(_score_label(hist))
    ax.set_title(f"Population development: {result.run}\n{_best_text(hist)}", fontsize=10)
    ax.grid(alpha=0.3)
    handles: list[Any] = []
    if len(members) <= 12:
        handles += [Line2D([], [], color=colours[m], lw=1.5, label=f"member {m}") for m in members]
    else:
        first, last = members[0], members[-1]
        handles += [
            Line2D([], [], color=colours[first], lw=1.5, label=f"member {first}"),
            Line2D([], [], color=colours[members[len(members) // 2]], lw=1.5, label="…"),
            Line2D([], [], color=colours[last], lw=1.5, label=f"member {last}"),
        ]
    handles += [
        Line2D(
            [],
            [],
            color="grey",
            marker="o",
            mfc="white",
            ms=4,
            lw=0.9,
            ls=(0, (2, 2)),
            label="exploit: continues from\nthe copied state",
        ),
        Line2D([], [], color=LINEAGE_COLOUR, lw=7, alpha=0.55, label="winner's lineage"),
        Line2D(
            [], [], marker="*", color=BEST_COLOUR, mec="black", ms=12, ls="none", label="best state"
        ),
    ]
    if any(p.score is None for p in hist.points()):
        handles.append(Line2D([], [], marker="x", color=FAILURE_COLOUR, ls="none", label="failure"))
    _legend_outside(ax, handles)
    return fig


def _link_states(copy: Copy) -> list[Start] | None:
    if copy.source_time is None or copy.score is None:
        return None
    return [
        Start(copy.source_step, copy.source_time, copy.age, copy.score),
        Start(copy.step, copy.time, copy.age, copy.score),
    ]


def _score_before(hist: History, member: int, when: float) -> float:
    scores = [
        p.score
        for s in hist.stretches[member]
        for p in s.points
        if p.time <= when and p.score is not None
    ]
    if scores:
        return scores[-1]
    every = [p.score for p in hist.points() if p.score is not None]
    return min(every) if every else 0.0


# -- the winner's schedule -------------------------------------------------------------
def _numeric(dist: Distribution, value: Any) -> float:
    if isinstance(dist, Choice):
        return float(dist.index(value)) if dist.contains(value) else float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _style_hparam_axis(ax: Axes, dist: Distribution, axis: str) -> None:
    if isinstance(dist, LogUniform):
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    if isinstance(dist, Choice):
        ticks = list(range(len(dist.values)))
        labels = [str(v) for v in dist.values]
        if axis == "y":
            ax.set_yticks(ticks, labels)
        else:
            ax.set_xticks(ticks, labels)


def _schedule(hist: History, lineage: Lineage | None) -> Figure:
    result = hist.result
    space = result.config.space
    names = [n for n, d in space.items() if not isinstance(d, Constant)]
    best = result.best
    fig = Figure(figsize=(10, 1.9 * (len(names) + 1) + 0.8), layout="constrained")
    axes = fig.subplots(len(names) + 1, 1, sharex=True, squeeze=False)[:, 0]
    if best is None or not result.schedule:
        axes[0].text(
            0.5, 0.5, "no best state yet", ha="center", va="center", transform=axes[0].transAxes
        )
        fig.suptitle(f"The winner's schedule: {result.run}")
        return fig
    members = sorted(hist.stretches)
    colours = _member_colours(members)
    entries = result.schedule
    ends = [e.step for e in entries[1:]] + [best.age]
    for ax in axes:
        for entry, end in zip(entries, ends, strict=True):
            ax.axvspan(entry.step, end, color=colours.get(entry.member, "grey"), alpha=0.16, lw=0)
        for entry in entries[1:]:
            ax.axvline(entry.step, color="grey", lw=0.5, alpha=0.6)
        ax.grid(alpha=0.3)

    score_ax = axes[0]
    if lineage is not None:
        states = [
            s
            for piece in lineage.pieces
            for s in piece.stretch.states(until_time=piece.end.time, until_step=piece.end.step)
        ]
        states = sorted(
            {s.age: s for s in states if s.score is not None}.values(), key=lambda s: s.age
        )
        score_ax.plot([s.age for s in states], _ys(states), color="black", lw=1.4)
    score_ax.plot(
        [best.age],
        [best.score],
        marker="*",
        ms=14,
        color=BEST_COLOUR,
        mec="black",
        mew=0.6,
        ls="none",
        clip_on=False,
        zorder=5,
    )
    score_ax.set_ylabel(result.config.metric)
    score_ax.set_title("score of the winning weights along their lineage", fontsize=9, loc="left")

    for ax, name in zip(axes[1:], names, strict=True):
        dist = space[name]
        xs: list[float] = []
        ys: list[float] = []
        for entry, end in zip(entries, ends, strict=True):
            value = _numeric(dist, entry.hparams.get(name))
            xs += [entry.step, end]
            ys += [value, value]
        ax.plot(xs, ys, color="black", lw=1.6, drawstyle="default")
        if isinstance(dist, (Choice, IntUniform)):
            ax.margins(y=0.15)
        _style_hparam_axis(ax, dist, "y")
        ax.set_ylabel(name)
    axes[-1].set_xlabel("age of the winning weights (training steps along the lineage)")
    axes[-1].set_xlim(0, max(best.age, 1))
    used = []
    for entry in entries:
        if entry.member not in used:
            used.append(entry.member)
    handles = [
        Patch(color=colours.get(m, "grey"), alpha=0.35, label=f"trained by member {m}")
        for m in sorted(used)[:12]
    ]
    _legend_outside(axes[0], handles)
    fig.suptitle(
        f"The winner's hyperparameter schedule: {result.run}\n{_best_text(hist)}, "
        f"{len(entries)} schedule entries",
        fontsize=10,
    )
    return fig


# -- lineage tree ----------------------------------------------------------------------
def _lineage_tree(hist: History, lineage: Lineage | None, x: str) -> Figure:
    result = hist.result
    members = sorted(hist.stretches)
    colours = _member_colours(members)
    t0 = _t0(hist)
    height = min(0.45 * len(members) + 2.0, 14.0)
    fig = Figure(figsize=(10, height), layout="constrained")
    ax = fig.add_subplot()
    for member in members:
        points = [p for s in hist.stretches[member] for p in s.points]
        if not points:
            continue
        last = max(p.step if x == "step" else p.time - t0 for p in points)
        ax.plot(
            [0, last],
            [member, member],
            color=colours[member],
            lw=2.2,
            alpha=0.45,
            solid_capstyle="butt",
            zorder=1,
        )
        failed = [p for p in points if p.score is None]
        if failed:
            ax.plot(
                [p.step if x == "step" else p.time - t0 for p in failed],
                [member] * len(failed),
                marker="x",
                color=FAILURE_COLOUR,
                ms=7,
                ls="none",
                zorder=5,
            )
    copies = hist.copies()
    on_path = {id(c) for c in lineage.copies} if lineage is not None else set()
    for copy in copies:
        if copy.source_time is None:
            continue
        tail = (copy.source_step if x == "step" else copy.source_time - t0, copy.source)
        head = (copy.step if x == "step" else copy.time - t0, copy.member)
        bold = id(copy) in on_path
        ax.annotate(
            "",
            xy=head,
            xytext=tail,
            arrowprops={
                "arrowstyle": "-|>",
                "color": "black" if bold else "grey",
                "lw": 1.8 if bold else 0.7,
                "alpha": 1.0 if bold else 0.55,
                "shrinkA": 0,
                "shrinkB": 2,
                "mutation_scale": 9 if bold else 6,
            },
            zorder=4 if bold else 2,
        )
    if lineage is not None:
        for piece in lineage.pieces:
            stretch = piece.stretch
            a = stretch.start.step if x == "step" else stretch.start.time - t0
            b = piece.end.step if x == "step" else piece.end.time - t0
            ax.plot(
                [a, b],
                [stretch.member, stretch.member],
                color=LINEAGE_COLOUR,
                lw=7,
                alpha=0.8,
                solid_capstyle="butt",
                zorder=3,
            )
        final = lineage.pieces[-1]
        ax.plot(
            [final.end.step if x == "step" else final.end.time - t0],
            [final.stretch.member],
            marker="*",
            ms=15,
            color=BEST_COLOUR,
            mec="black",
            mew=0.6,
            ls="none",
            zorder=6,
        )
    ax.set_yticks(members, [f"member {m}" for m in members])
    ax.set_ylim(min(members, default=0) - 0.7, max(members, default=0) + 0.7)
    ax.invert_yaxis()
    ax.set_xlabel(_x_label(x))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(
        f"Lineage: who copied whom, when ({len(copies)} exploits): {result.run}\n"
        f"{_best_text(hist)}",
        fontsize=10,
    )
    handles = [
        Line2D(
            [],
            [],
            color="grey",
            lw=0.8,
            marker=">",
            ms=4,
            label="exploit: source's checkpoint\n→ the member that copied it",
        ),
        Line2D(
            [],
            [],
            color="black",
            lw=1.8,
            marker=">",
            ms=5,
            label="exploit on the\nwinner's lineage",
        ),
        Line2D(
            [],
            [],
            color=LINEAGE_COLOUR,
            lw=7,
            alpha=0.8,
            label="stretches of the\nwinner's lineage",
        ),
        Line2D(
            [], [], marker="*", color=BEST_COLOUR, mec="black", ms=12, ls="none", label="best state"
        ),
    ]
    if any(p.score is None for p in hist.points()):
        handles.append(Line2D([], [], marker="x", color=FAILURE_COLOUR, ls="none", label="failure"))
    _legend_outside(ax, handles)
    return fig


# -- hyperparameters explored vs score -------------------------------------------------------
def _hparams(hist: History) -> Figure:
    result = hist.result
    space = result.config.space
    names = [n for n, d in space.items() if not isinstance(d, Constant)] or list(space)
    columns = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / columns) if names else 1
    fig = Figure(figsize=(4.2 * columns + 1.2, 3.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    points = [p for p in hist.points() if p.score is not None and math.isfinite(p.score)]
    steps = np.array([p.step for p in points], dtype=float)
    norm = Normalize(vmin=0, vmax=max(float(steps.max()) if steps.size else 1.0, 1.0))
    scores = [p.score for p in points if p.score is not None]
    rng = np.random.default_rng(0)  # jitter for categorical values only; fixed, for stable files
    mappable = None
    best = result.best
    for ax, name in zip(axes, names, strict=False):
        dist = space[name]
        xs = np.array([_numeric(dist, p.hparams.get(name)) for p in points], dtype=float)
        if isinstance(dist, (Choice, IntUniform)) and xs.size:
            xs = xs + rng.uniform(-0.15, 0.15, xs.size)
        mappable = ax.scatter(xs, scores, c=steps, cmap="viridis", norm=norm, s=9, alpha=0.6, lw=0)
        if best is not None and name in best.hparams:
            ax.plot(
                [_numeric(dist, best.hparams[name])],
                [best.score],
                marker="*",
                ms=15,
                color=BEST_COLOUR,
                mec="black",
                mew=0.6,
                ls="none",
            )
        _style_hparam_axis(ax, dist, "x")
        _robust_ylim(ax, scores, result.config.mode)
        ax.set_xlabel(name)
        ax.set_ylabel(result.config.metric)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes[: len(names)]), label="member's step", shrink=0.9)
    fig.suptitle(
        f"Hyperparameters explored vs {result.config.metric}: {len(points)} evaluations, "
        f"{result.run}\n★ the winner's final hyperparameters; {_best_text(hist)}",
        fontsize=10,
    )
    return fig
