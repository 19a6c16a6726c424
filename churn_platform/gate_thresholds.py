"""Quality-gate thresholds (docs/contract.md §5): typed, validated once, read by every gate.

Defaults are the origin lesson's plus what a careful team adds; `CHURN_GATE_<NAME>`
overrides any of them. A value that is not a finite number in its range is an error
when the definitions load, never a gate that silently passes or fails.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

ENV_PREFIX = "CHURN_GATE_"
_RATES = ("max_null_rate", "min_churn_rate", "max_churn_rate", "max_rejected_rate", "max_duplicate_rate")


@dataclass(frozen=True)
class GateThresholds:
    min_training_rows: int = 10_000
    max_null_rate: float = 0.05
    min_churn_rate: float = 0.005
    max_churn_rate: float = 0.5
    max_rejected_rate: float = 0.01
    max_duplicate_rate: float = 0.05
    min_auc: float = 0.7
    min_auc_delta: float = 0.005
    max_psi: float = 0.2  # population drift warning on churn_scores
    max_realized_auc_drop: float = 0.05  # realized AUC below the promoted holdout AUC: a warning

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{_env_name(field.name)}={value!r} is not a finite number")
        if self.min_training_rows < 1 or self.min_training_rows != int(self.min_training_rows):
            raise ValueError(f"{_env_name('min_training_rows')}={self.min_training_rows!r} must be a positive integer")
        for name in _RATES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{_env_name(name)}={getattr(self, name)!r} is a rate: it must lie in [0, 1]")
        if self.min_churn_rate > self.max_churn_rate:
            raise ValueError(
                f"{_env_name('min_churn_rate')}={self.min_churn_rate} is above "
                f"{_env_name('max_churn_rate')}={self.max_churn_rate}"
            )
        if not 0.5 < self.min_auc <= 1.0:
            raise ValueError(f"{_env_name('min_auc')}={self.min_auc!r} must lie in (0.5, 1]: 0.5 is a coin flip")
        if not 0.0 <= self.min_auc_delta < 0.5:
            raise ValueError(f"{_env_name('min_auc_delta')}={self.min_auc_delta!r} must lie in [0, 0.5)")
        if not self.max_psi > 0.0:
            raise ValueError(f"{_env_name('max_psi')}={self.max_psi!r} must be above 0")
        if not 0.0 <= self.max_realized_auc_drop < 0.5:
            raise ValueError(
                f"{_env_name('max_realized_auc_drop')}={self.max_realized_auc_drop!r} must lie in [0, 0.5)"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GateThresholds:
        """Defaults overridden by CHURN_GATE_<NAME> variables."""
        values = {}
        for field in dataclasses.fields(cls):
            raw = env.get(_env_name(field.name))
            if raw is None:
                continue
            try:
                number = float(raw)
            except ValueError as err:
                raise ValueError(f"{_env_name(field.name)}={raw!r} is not a number") from err
            if field.name == "min_training_rows" and number.is_integer():
                number = int(number)
            values[field.name] = number
        return cls(**values)


def _env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()
