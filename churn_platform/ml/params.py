"""Training hyperparameters: a light module, so Dagster config can use them without sklearn."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainingParams:
    """Hyperparameters and split settings; every field is logged to MLflow as a param.

    Early stopping is off: the 20% holdout is already set aside, and an inner
    validation split would take more rows from a training set of ~10k users.
    n_threads caps OpenMP during fit: on a busy machine (parallel Dagster steps)
    HistGradientBoosting's default of all cores made a 0.1 s fit take 1-11 s.
    """

    learning_rate: float = 0.03
    max_iter: int = 200
    max_leaf_nodes: int = 4
    min_samples_leaf: int = 50
    l2_regularization: float = 1.0
    test_size: float = 0.2
    random_state: int = 42
    n_threads: int = 1

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
