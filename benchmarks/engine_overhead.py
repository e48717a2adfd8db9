"""The engine's own cost per report: store write, ready check, decision (and, at ready
points, the exploit/explore and a checkpoint of a tiny state).

Drives the ask-and-tell core directly on the paper's toy, so nothing but poptrain's own
work is timed. Prints one JSON object. Usage:

    python benchmarks/engine_overhead.py [--members 8] [--steps 400] [--storage URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from poptrain import (
    Continue,
    EverySteps,
    Exploit,
    GaussianNoise,
    Population,
    RunConfig,
    Truncation,
)
from poptrain.checkpoints import CheckpointStore
from poptrain.demos.toy import TOY_SPACE, ToyTrainable
from poptrain.store import SQLStore, sqlite_url


def measure(members: int, steps: int, storage: str | None, root: Path) -> dict[str, float]:
    config = RunConfig(
        trainable=ToyTrainable,
        space=TOY_SPACE,
        metric="q",
        mode="max",
        population_size=members,
        max_steps=steps,
        ready=EverySteps(4),
        exploit=Truncation(0.25),
        explore=GaussianNoise(0.1),
        trainable_options={"lr": 0.02},
    )
    store = SQLStore(storage or sqlite_url(root / "bench.db"))
    checkpoints = CheckpointStore(root / "checkpoints")
    population = Population.create(store, f"bench-{time.time_ns()}", config, checkpoints)
    trainables: dict[int, ToyTrainable] = {}
    plain: list[float] = []  # reports between ready points: store write + ready check
    ready: list[float] = []  # ready points: + decision, exploit/explore, checkpoint
    while (record := population.claim()) is not None:
        member = record.member
        trainable = trainables.setdefault(
            member, ToyTrainable(record.hparams, record.seed, lr=0.02)
        )
        step = record.step
        while True:
            step += 1
            trainable.step()
            score = float(trainable.evaluate()["q"])

            def save(t: ToyTrainable = trainable, m: int = member, s: int = step) -> str:
                return checkpoints.save(m, s, t.save)

            started = time.perf_counter()
            decision = population.tell(member, step, score, save=save)
            elapsed = time.perf_counter() - started
            if isinstance(decision, Continue) and not decision.ready:
                plain.append(elapsed)
                continue
            ready.append(elapsed)
            if isinstance(decision, Exploit):
                if decision.checkpoint is not None:
                    trainable.load(checkpoints.path(decision.checkpoint))
                trainable.set_hparams(decision.hparams)
            if isinstance(decision, (Continue, Exploit)):
                population.release(member)  # rotate, as W < N workers do
            break
    store.close()
    every = plain + ready
    return {
        "reports": len(every),
        "per_report_ms_mean": 1000 * statistics.fmean(every),
        "plain_report_ms_median": 1000 * statistics.median(plain),
        "ready_report_ms_median": 1000 * statistics.median(ready),
        "ready_report_ms_p95": 1000 * statistics.quantiles(ready, n=20)[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--storage", default=None, help="store URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args.members, args.steps, args.storage, Path(tmp))
    figures.update(members=args.members, steps=args.steps, storage=args.storage or "sqlite")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
