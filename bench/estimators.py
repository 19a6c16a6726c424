"""Default HistGradientBoosting vs the baseline GradientBoostingClassifier on the same splits.

Run: python -m bench.estimators
"""

import statistics

from churn_platform.ml.training import TrainingParams, baseline_estimator, train
from churn_platform.dev.synthetic_training import synthetic_training_frame


def main(n_rows: int = 15_000, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    frames = [synthetic_training_frame(n_rows=n_rows, seed=seed) for seed in seeds]
    candidates = {
        "hist_gradient_boosting (default)": lambda: None,
        "baseline GradientBoostingClassifier(300, 0.05)": baseline_estimator,
    }
    for name, make in candidates.items():
        runs = [train(frame, TrainingParams(), estimator=make()) for frame in frames]
        aucs = [run.metrics["roc_auc"] for run in runs]
        seconds = [run.fit_seconds for run in runs]
        print(
            f"{name}: mean AUC {statistics.mean(aucs):.4f} "
            f"(per dataset {', '.join(f'{a:.4f}' for a in aucs)}), "
            f"median fit {statistics.median(seconds):.2f} s"
        )


if __name__ == "__main__":
    main()
