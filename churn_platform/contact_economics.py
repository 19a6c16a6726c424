"""What contacting a user costs and what keeping one is worth: the promotion report's campaign value.

Information for the retention team, never a gate. The defaults are placeholders a team replaces
with its own figures (`CHURN_CONTACT_COST`, `CHURN_SAVED_CUSTOMER_VALUE`, `CHURN_SAVE_RATE`); the
report prints the assumptions beside the values so nobody mistakes them for measurements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

_ENV = {
    "contact_cost": "CHURN_CONTACT_COST",
    "saved_customer_value": "CHURN_SAVED_CUSTOMER_VALUE",
    "save_rate": "CHURN_SAVE_RATE",
}


@dataclass(frozen=True)
class ContactEconomics:
    contact_cost: float = 5.0  # per user contacted (a call, an offer)
    saved_customer_value: float = 200.0  # margin kept when a churner stays
    save_rate: float = 0.2  # share of contacted churners the campaign keeps

    def __post_init__(self):
        for name in ("contact_cost", "saved_customer_value"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{_ENV[name]}={value!r} must be a finite number >= 0")
        if not (math.isfinite(self.save_rate) and 0.0 <= self.save_rate <= 1.0):
            raise ValueError(f"{_ENV['save_rate']}={self.save_rate!r} is a rate: it must lie in [0, 1]")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ContactEconomics:
        values = {}
        for field_name, variable in _ENV.items():
            raw = env.get(variable)
            if raw:
                try:
                    values[field_name] = float(raw)
                except ValueError as err:
                    raise ValueError(f"{variable}={raw!r} is not a number") from err
        return cls(**values)
