"""Hypothesis profiles for the protocol's fuzz tests (docs/protocol.md, "Fuzzing").

``ci`` (the default) is derandomised, so a failure reproduces on every run and machine, and bounded so
the whole fuzz run stays well under a minute; ``long`` explores fresh random inputs for much longer:
``HYPOTHESIS_PROFILE=long pytest tests/backend/portable -k fuzz`` (or ``--hypothesis-profile=long``).
A failing ``long`` example prints its ``@reproduce_failure`` blob and the seed to rerun it with
``--hypothesis-seed=<seed>``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=150, derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
