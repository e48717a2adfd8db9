"""Baselines on PBT's own engine and budget: grid search, random search, TPE.

A baseline is PBT with exploit and explore switched off: the same Trainable, store,
checkpoints and executor; ``population_size`` members each train ``max_steps`` steps, so
the compute equals a PBT run's with the same settings (``Result.steps_trained`` says so),
and the records, reports and plots work the same way. The methods are plain data
(:class:`Method`); :func:`run_method` runs one.

- ``pbt``: truncation selection (bottom 20% copy the top 20%) and perturb/resample explore.
- ``random_search``: fixed hyperparameters drawn from the space. With the same run seed
  they are exactly PBT's initial draws, so the two start from the same configurations.
- ``grid_search``: fixed hyperparameters on a grid (:func:`grid_hparams`).
- ``tpe``: Optuna's TPE sampler proposes the configurations in rounds of ``workers``
  members (one run per round, exploit off); each member's best validation score is told
  back. Needs the ``optuna`` extra.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import run
from .errors import ConfigError
from .results import BestMember, Result
from .space import Choice, Constant, Distribution, IntUniform, LogUniform, Space, Uniform
from .strategies import ExploitStrategy, ExploreStrategy, Perturb, Truncation
from .strategies.explore import MILD

__all__ = [
    "METHODS",
    "Method",
    "MethodOutcome",
    "grid_hparams",
    "grid_levels",
    "run_method",
]

HParams = dict[str, Any]

#: How a method picks its members' starting hyperparameters.
INITIAL_KINDS = ("prior", "grid", "tpe")


@dataclass(frozen=True)
class Method:
    """One tuning method as plain data, run by :func:`run_method` on the PBT engine.

    ``initial``: ``"prior"`` (draws from the space, seeded by the run seed), ``"grid"``
    (:func:`grid_hparams` with ``grid_levels``) or ``"tpe"`` (Optuna's TPE, in rounds).
    ``exploit``/``explore``: PBT's strategies, or None (fixed hyperparameters).
    """

    name: str
    initial: str = "prior"
    exploit: ExploitStrategy | None = None
    explore: ExploreStrategy | None = None
    #: Levels per hyperparameter for ``initial="grid"`` (None: spread over the space).
    grid_levels: Mapping[str, int] | None = None
    #: TPE's random start-up trials (the rest are proposed by the model).
    tpe_startup: int = 4

    def __post_init__(self) -> None:
        if self.initial not in INITIAL_KINDS:
            raise ConfigError(
                f"{self.name}.initial", self.initial, f"must be one of {INITIAL_KINDS}"
            )
        if self.initial == "tpe" and (self.exploit is not None or self.explore is not None):
            raise ConfigError(f"{self.name}.exploit", self.exploit, "TPE runs with exploit off")


METHODS: dict[str, Method] = {
    "pbt": Method("pbt", "prior", Truncation(0.2), Perturb(MILD, resample_probability=0.25)),
    "random_search": Method("random_search", "prior"),
    "grid_search": Method("grid_search", "grid"),
    "tpe": Method("tpe", "tpe"),
}


# -- grids -------------------------------------------------------------------------------
def _quantile(dist: Distribution, q: float) -> Any:
    """The value at probability ``q`` of ``dist``'s prior (inverse CDF)."""
    if isinstance(dist, Uniform):
        return dist.low + q * (dist.high - dist.low)
    if isinstance(dist, LogUniform):
        return math.exp(math.log(dist.low) + q * (math.log(dist.high) - math.log(dist.low)))
    if isinstance(dist, IntUniform):
        if dist.log:
            span = math.log(dist.high + 1) - math.log(dist.low)
            return dist.clip(math.floor(math.exp(math.log(dist.low) + q * span)))
        return dist.clip(math.floor(dist.low + q * (dist.high - dist.low + 1)))
    if isinstance(dist, Choice):
        return dist.values[min(int(q * len(dist.values)), len(dist.values) - 1)]
    if isinstance(dist, Constant):
        return dist.value
    raise ConfigError("space", dist, "has no quantiles for a grid; give explicit initial_hparams")


def grid_levels(space: Space, n: int) -> dict[str, int]:
    """Split ``n`` grid points over the space: levels per name, whose product is ``n``.

    Prime factors of ``n`` go, largest first, to the name with the fewest levels so far
    (ties to the first name of the space); constants get one level.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("population_size", n, "must be an integer >= 1")
    names = [name for name, dist in space.items() if not isinstance(dist, Constant)]
    levels = dict.fromkeys(space, 1)
    if not names:
        if n != 1:
            raise ConfigError("space", dict(space), "has only constants: a grid has one point")
        return levels
    factors: list[int] = []
    rest, p = n, 2
    while rest > 1:
        while rest % p == 0:
            factors.append(p)
            rest //= p
        p += 1
    for factor in sorted(factors, reverse=True):
        target = min(names, key=lambda name: levels[name])
        levels[target] *= factor
    return levels


def grid_hparams(space: Space, n: int, levels: Mapping[str, int] | None = None) -> list[HParams]:
    """A full grid of ``n`` configurations over ``space``.

    ``levels`` gives the number of values per name (their product must be ``n``; names left
    out get one); by default :func:`grid_levels` spreads ``n`` evenly. A name with ``k``
    levels takes the values at the centres of ``k`` equal-probability cells of its prior
    (quantiles ``(2i + 1) / 2k``): the middle for one level, the quartiles for two, log
    spaced for a log-uniform; a categorical takes ``k`` of its values, spread out.
    """
    chosen = grid_levels(space, n) if levels is None else {name: 1 for name in space}
    if levels is not None:
        unknown = sorted(set(levels) - set(space))
        if unknown:
            raise ConfigError("grid_levels", dict(levels), f"names {unknown} not in the space")
        for name, count in levels.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"grid_levels.{name}", count, "must be an integer >= 1")
            chosen[name] = count
        if math.prod(chosen.values()) != n:
            raise ConfigError(
                "grid_levels", dict(levels), f"makes {math.prod(chosen.values())} points, not {n}"
            )
    axes: list[list[Any]] = []
    for name, dist in space.items():
        count = chosen[name]
        if isinstance(dist, Choice) and count > len(dist.values):
            raise ConfigError(
                f"grid_levels.{name}", count, f"exceeds its {len(dist.values)} values"
            )
        values = [_quantile(dist, (2 * i + 1) / (2 * count)) for i in range(count)]
        if isinstance(dist, (IntUniform, Choice)) and len({repr(v) for v in values}) < count:
            raise ConfigError(f"grid_levels.{name}", count, "has more levels than distinct values")
        axes.append(values)
    return [dict(zip(space, point, strict=True)) for point in itertools.product(*axes)]


# -- running a method ----------------------------------------------------------------------
@dataclass(frozen=True)
class MethodOutcome:
    """What one method produced on one seed: its best state and every run it took."""

    method: str
    best: BestMember
    results: list[Result]
    #: The run directory of each run (TPE: one per round).
    run_dirs: list[Path]

    @property
    def steps_trained(self) -> int:
        return sum(result.steps_trained for result in self.results)

    @property
    def exploits(self) -> int:
        return sum(result.exploits for result in self.results)


def run_method(
    method: Method,
    trainable: Any,
    *,
    space: Space,
    metric: str,
    mode: str,
    population_size: int,
    max_steps: int,
    seed: int,
    run_dir: str | Path,
    workers: int | None = None,
    **run_options: Any,
) -> MethodOutcome:
    """Run ``method`` with ``population_size`` members of ``max_steps`` steps each.

    ``run_options`` go to :func:`poptrain.run` unchanged (``ready``, ``trainable_options``,
    ``storage``, ``executor``, ``progress``…), the same for every method. ``run_dir`` is
    the run directory (TPE makes one sub-folder per round).
    """
    common: dict[str, Any] = {
        "space": space,
        "metric": metric,
        "mode": mode,
        "max_steps": max_steps,
        "seed": seed,
        "workers": workers,
        **run_options,
    }
    if method.initial == "tpe":
        return _run_tpe(method, trainable, population_size, Path(run_dir), common)
    initial = None
    if method.initial == "grid":
        initial = grid_hparams(space, population_size, method.grid_levels)
    result = run(
        trainable,
        run_dir=run_dir,
        population_size=population_size,
        exploit=method.exploit,
        explore=method.explore,
        initial_hparams=initial,
        **common,
    )
    if result.best is None:
        raise ConfigError("run", result.run, f"{method.name}: no member produced a usable score")
    return MethodOutcome(method.name, result.best, [result], [Path(run_dir)])


def _run_tpe(
    method: Method, trainable: Any, members: int, root: Path, common: dict[str, Any]
) -> MethodOutcome:
    try:
        import optuna
    except ImportError:
        raise ConfigError("method", "tpe", "needs Optuna: pip install 'poptrain[optuna]'") from None
    space: Space = common["space"]
    sign = 1.0 if common["mode"] == "max" else -1.0
    workers = common.get("workers") or 1
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        n_startup_trials=min(method.tpe_startup, members), seed=int(common["seed"])
    )
    study = optuna.create_study(direction="maximize" if sign > 0 else "minimize", sampler=sampler)
    results: list[Result] = []
    run_dirs: list[Path] = []
    best: BestMember | None = None
    left, round_index = members, 0
    while left > 0:
        size = min(workers, left)
        trials = [study.ask() for _ in range(size)]
        proposals = [_suggest(trial, space) for trial in trials]
        run_dirs.append(root / f"round-{round_index}")
        options = {**common, "seed": int(common["seed"]) * 1000 + round_index}
        if common.get("name"):
            options["name"] = f"{common['name']}-round-{round_index}"
        if common.get("checkpoints"):
            options["checkpoints"] = f"{str(common['checkpoints']).rstrip('/')}/round-{round_index}"
        result = run(
            trainable,
            run_dir=run_dirs[-1],
            population_size=size,
            exploit=None,
            explore=None,
            initial_hparams=proposals,
            **options,
        )
        scores = result.best_score_by_member()
        for index, trial in enumerate(trials):
            score = scores.get(index)
            if score is None or not math.isfinite(score):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, score)
        candidate = result.best
        if candidate is not None and (best is None or sign * candidate.score > sign * best.score):
            best = candidate
        results.append(result)
        left -= size
        round_index += 1
    if best is None:
        raise ConfigError("run", str(root), "tpe: no member produced a usable score")
    return MethodOutcome(method.name, best, results, run_dirs)


def _suggest(trial: Any, space: Space) -> HParams:
    """Ask an Optuna trial for one value per name of the space."""
    out: HParams = {}
    for name, dist in space.items():
        if isinstance(dist, Uniform):
            out[name] = trial.suggest_float(name, dist.low, dist.high)
        elif isinstance(dist, LogUniform):
            out[name] = trial.suggest_float(name, dist.low, dist.high, log=True)
        elif isinstance(dist, IntUniform):
            out[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        elif isinstance(dist, Choice):
            out[name] = trial.suggest_categorical(name, list(dist.values))
        elif isinstance(dist, Constant):
            out[name] = dist.value
        else:
            raise ConfigError(f"space.{name}", dist, "is not supported by the TPE baseline")
    return out
