"""``poptrain plot``: PNG files read back, sized and non-blank, with the lineage drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from toys import Cli

from poptrain import RunDir
from poptrain.plots import BEST_COLOUR, FAILURE_COLOUR, LINEAGE_COLOUR, PLOTS

MIN_WIDTH, MIN_HEIGHT = 600, 300


def _image(path: Path) -> np.ndarray:
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    return pixels[:, :, :3]


def _share_near(pixels: np.ndarray, colour: tuple[float, float, float], tol: float = 0.04) -> float:
    return float((np.abs(pixels - np.array(colour)).max(axis=2) < tol).mean())


def _count_near(pixels: np.ndarray, colour: tuple[float, float, float], tol: float = 0.04) -> int:
    return int((np.abs(pixels - np.array(colour)).max(axis=2) < tol).sum())


def _over_white(colour: str, alpha: float) -> tuple[float, float, float]:
    r, g, b = to_rgb(colour)
    return (r * alpha + 1 - alpha, g * alpha + 1 - alpha, b * alpha + 1 - alpha)


def _assert_drawn(path: Path) -> np.ndarray:
    assert path.is_file() and path.suffix == ".png"
    pixels = _image(path)
    height, width = pixels.shape[:2]
    assert width >= MIN_WIDTH and height >= MIN_HEIGHT
    ink = (pixels < 0.95).any(axis=2).mean()  # not white
    assert ink > 0.03, f"{path.name} is nearly blank ({ink:.1%} ink)"
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50
    return pixels


def test_plot_writes_every_figure_and_prints_the_paths(
    toy_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    out_dir = tmp_path / "figures"
    code, out, _ = cli("plot", str(toy_dir / "pbt"), "--output", str(out_dir))
    assert code == 0
    printed = [Path(line) for line in out.splitlines()]
    assert printed == [out_dir / f"{name}.png" for name in PLOTS]
    images = {path.stem: _assert_drawn(path) for path in printed}
    # The winner's lineage (the highlighter band) and its best state (the star) are drawn.
    assert _share_near(images["population"], _over_white(LINEAGE_COLOUR, 0.55)) > 0.002
    assert _count_near(images["population"], to_rgb(BEST_COLOUR)) > 50
    assert _share_near(images["lineage"], _over_white(LINEAGE_COLOUR, 0.8)) > 0.002
    assert _count_near(images["schedule"], to_rgb(BEST_COLOUR)) > 50


def test_plot_defaults_to_the_run_directory(async_dir: Path, cli: Cli) -> None:
    code, out, _ = cli("plot", str(async_dir), "--json")
    assert code == 0
    paths = {name: Path(path) for name, path in json.loads(out).items()}
    assert sorted(paths) == sorted(PLOTS)
    for path in paths.values():
        assert path.parent == async_dir / "plots"
        _assert_drawn(path)


def test_plot_over_wall_time(async_dir: Path, tmp_path: Path, cli: Cli) -> None:
    code, out, _ = cli("plot", str(async_dir), "--x", "time", "-o", str(tmp_path), "--dpi", "80")
    assert code == 0
    for line in out.splitlines():
        pixels = _image(Path(line))
        assert pixels.shape[1] >= 10 * 80 * 0.9  # 10 inches wide at 80 dpi


def test_schedule_has_one_panel_per_hyperparameter(
    mixed_dir: Path, async_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    heights = {}
    for name, run_dir in (("mixed", mixed_dir), ("async", async_dir)):
        code, _, _ = cli("plot", str(run_dir), "-o", str(tmp_path / name), "--dpi", "50")
        assert code == 0
        heights[name] = _image(tmp_path / name / "schedule.png").shape[0]
    # 5 hyperparameters (+ the score panel) against 2: a taller figure.
    mixed = RunDir.read(mixed_dir).result().config.space
    assert len(mixed) == 5
    assert heights["mixed"] > heights["async"] * 1.5


def test_plot_marks_failures_and_every_kind_of_hyperparameter(
    mixed_dir: Path, tmp_path: Path, cli: Cli
) -> None:
    code, _, _ = cli("plot", str(mixed_dir), "-o", str(tmp_path))
    assert code == 0
    for name in PLOTS:
        _assert_drawn(tmp_path / f"{name}.png")
    population = _image(tmp_path / "population.png")
    assert _count_near(population, to_rgb(FAILURE_COLOUR)) > 20


@pytest.mark.parametrize("method", ["grid", "explore_only", "exploit_only"])
def test_plot_baselines(toy_dir: Path, tmp_path: Path, cli: Cli, method: str) -> None:
    code, out, _ = cli("plot", str(toy_dir / method), "-o", str(tmp_path), "--dpi", "60")
    assert code == 0
    assert len(out.splitlines()) == len(PLOTS)
