"""poptrain: Population Based Training (Jaderberg et al., 2017).

A population of members trains asynchronously; when a member is ready it exploits (copies
the weights and hyperparameters of a better member) and explores (perturbs them). The
result is the best model and its hyperparameter schedule.
"""

from __future__ import annotations

from .api import RunDir, resume, run, run_config
from .checkpoints import CheckpointStore
from .config import RunConfig
from .decision import Continue, Decision, Exploit, Operation, Stop, Wait
from .errors import ConfigError, PopTrainError, StorageError
from .executors import InlineExecutor, Interrupted, LocalExecutor
from .function_api import FunctionTrainable, Session, function_trainable
from .population import Population
from .results import BestMember, Result, ScheduleEntry
from .space import Choice, Constant, Distribution, IntUniform, LogUniform, Uniform
from .store import SQLStore, open_store
from .strategies import (
    AGGRESSIVE,
    MILD,
    BinaryTournament,
    CustomExplore,
    Elitist,
    EverySeconds,
    EverySteps,
    GaussianNoise,
    Perturb,
    ReadyWhen,
    Truncation,
    TTest,
)
from .trainable import Trainable

__version__ = "0.1.0"

__all__ = [
    "AGGRESSIVE",
    "MILD",
    "BestMember",
    "BinaryTournament",
    "CheckpointStore",
    "Choice",
    "ConfigError",
    "Constant",
    "Continue",
    "CustomExplore",
    "Decision",
    "Distribution",
    "Elitist",
    "EverySeconds",
    "EverySteps",
    "Exploit",
    "FunctionTrainable",
    "GaussianNoise",
    "InlineExecutor",
    "IntUniform",
    "Interrupted",
    "LocalExecutor",
    "LogUniform",
    "Operation",
    "Perturb",
    "PopTrainError",
    "Population",
    "ReadyWhen",
    "Result",
    "RunConfig",
    "RunDir",
    "SQLStore",
    "ScheduleEntry",
    "Session",
    "Stop",
    "StorageError",
    "TTest",
    "Trainable",
    "Truncation",
    "Uniform",
    "Wait",
    "__version__",
    "function_trainable",
    "open_store",
    "resume",
    "run",
    "run_config",
]
