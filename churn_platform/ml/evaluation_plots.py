"""PNG plots of a holdout evaluation, drawn headless (matplotlib's Agg backend) for MLflow.

The plots are drawn from the evaluation's JSON (the same `evaluation.json` logged with the
run) in a side process: importing and drawing with matplotlib costs about a second, which
runs on the other core while the training step logs the model, instead of after it.
This module imports nothing heavier than matplotlib, so the side process starts fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EVALUATION_JSON = "evaluation.json"
PLOT_FILES = ("gains.png", "calibration.png", "importance.png", "auc_by_tier.png")
_DPI = 80


class PlotsFailedError(RuntimeError):
    """The side process drawing the plots exited with an error."""


def draw_plots(evaluation: dict, directory: Path) -> list[Path]:
    """Cumulative gains and lift, reliability curve, feature importance, AUC per tier."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # a bare Figure needs no pyplot state and no GUI

    directory.mkdir(parents=True, exist_ok=True)
    lift = evaluation["lift"]
    deciles = lift["deciles"]
    written = []

    def save(figure: Figure, name: str) -> None:
        path = directory / name
        figure.savefig(path, dpi=_DPI)
        written.append(path)

    figure = Figure(figsize=(8, 3.5), layout="constrained")
    gains_axes, lift_axes = figure.subplots(1, 2)
    shares = [0.0] + [d["decile"] / len(deciles) for d in deciles]
    gains_axes.plot(shares, [0.0] + [d["cumulative_gain"] for d in deciles], marker="o", label="model")
    gains_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    gains_axes.set(title="Cumulative gains", xlabel="share of users contacted (riskiest first)",
                   ylabel="share of churners reached")
    gains_axes.legend()
    lift_axes.bar([d["decile"] for d in deciles], [d["lift"] for d in deciles])
    lift_axes.axhline(1.0, linestyle="--", color="grey")
    lift_axes.set(title=f"Lift by decile (top {lift['top_decile_lift']:.2f})", xlabel="decile (1 = riskiest)",
                  ylabel="churn rate / overall")
    save(figure, PLOT_FILES[0])

    calibration = evaluation["calibration"]
    figure = Figure(figsize=(4.5, 4), layout="constrained")
    axes = figure.subplots()
    filled = [b for b in calibration["bins"] if b["count"]]
    axes.plot([b["mean_predicted"] for b in filled], [b["observed_rate"] for b in filled], marker="o", label="model")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.set(title=f"Reliability (Brier {calibration['brier_score']:.4f})", xlabel="mean predicted",
             ylabel="observed churn rate", xlim=(0, 1), ylim=(0, 1))
    axes.legend()
    save(figure, PLOT_FILES[1])

    figure = Figure(figsize=(5.5, 3.5), layout="constrained")
    axes = figure.subplots()
    ranked = list(reversed(evaluation["importance"]))
    axes.barh([f["feature"] for f in ranked], [f["auc_drop"] for f in ranked], xerr=[f["std"] for f in ranked])
    axes.set(title="Permutation importance", xlabel="ROC AUC lost when shuffled")
    save(figure, PLOT_FILES[2])

    figure = Figure(figsize=(4.5, 3.5), layout="constrained")
    axes = figure.subplots()
    defined = [s for s in evaluation["tiers"] if s["auc"] is not None]
    axes.bar([str(s["segment"]) for s in defined], [s["auc"] for s in defined])
    axes.axhline(evaluation["roc_auc"], linestyle="--", color="grey", label=f"all users {evaluation['roc_auc']:.3f}")
    axes.set(title="ROC AUC by plan tier", ylabel="ROC AUC", ylim=(0.5, 1.0))
    axes.legend()
    save(figure, PLOT_FILES[3])
    return written


class PlotProcess:
    """Plots drawn by a side process from `<directory>/evaluation.json`; `wait()` returns the files."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait(self) -> list[Path]:
        _, stderr = self._process.communicate()
        if self._process.returncode != 0:
            raise PlotsFailedError(
                f"drawing the evaluation plots failed (exit {self._process.returncode}): "
                f"{stderr.decode(errors='replace').strip()[-2000:]}"
            )
        return [self.directory / name for name in PLOT_FILES]

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def start_plots(evaluation: dict, directory: Path) -> PlotProcess:
    """Write the evaluation's JSON into `directory` and start drawing its plots beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / EVALUATION_JSON).write_text(json.dumps(evaluation, indent=1))
    return PlotProcess(directory)


if __name__ == "__main__":
    target = Path(sys.argv[1])
    draw_plots(json.loads((target / EVALUATION_JSON).read_text()), target)
