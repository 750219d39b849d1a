"""Property-based tests of the input readers (Hypothesis).

Each test carries `BUDGET`, the profile named by $HYPOTHESIS_PROFILE: `ci` (the default, in the
normal suite: 25 examples per property, derandomized so a CI run is repeatable, about a minute
in all) or `long` (`make fuzz`: 1,000 random examples each, failures kept in .hypothesis/ and
replayed first next time). The profiles are applied per test, not loaded globally, so other
Hypothesis-based tests in the suite keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=_SLOW_OK
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=_SLOW_OK)
BUDGET = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
