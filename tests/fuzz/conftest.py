"""Hypothesis budgets for the property tests.

The normal suite runs the `ci` profile: few examples, derandomized, so a CI run is repeatable
and stays within seconds. `make fuzz` runs the `long` profile (HYPOTHESIS_PROFILE=long): many
more examples, random each time, failures kept in .hypothesis/ and replayed first next time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=_SLOW_OK
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
