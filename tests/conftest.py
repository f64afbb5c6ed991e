"""Shared pytest configuration: hypothesis profiles, and files that are not tests.

Profiles: ``ci`` (bounded and derandomized: the same examples every run) is loaded when the ``CI``
environment variable is set; ``dev`` (the default) is as small but draws fresh examples. Either
can be forced with ``HYPOTHESIS_PROFILE=<name>``; ``thorough`` (2000 examples) is for hunting
counterexamples by hand. Neither writes an example database into the
working tree.
"""

from __future__ import annotations

import importlib
import os
import warnings

from hypothesis import HealthCheck, settings

# tests/golden/make_golden.py imports torch (make_peer_golden.py torch and keras): tools of
# generation time only, never collected
# (--doctest-modules would otherwise import every .py file under tests/).
collect_ignore = ["golden/make_golden.py", "golden/make_peer_golden.py"]

# When a property fails, hypothesis' pytest plugin imports its patch writer (libcst), whose import
# emits a DeprecationWarning; under filterwarnings=error that becomes an INTERNALERROR hiding the
# real failure. Import it once here, quietly, so the report path finds it cached.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        importlib.import_module("hypothesis.extra._patching")
    except ImportError:  # libcst not installed: the plugin skips the patch too
        pass

settings.register_profile(
    "ci",
    max_examples=50,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(  # by hand, to hunt for counterexamples: HYPOTHESIS_PROFILE=thorough
    "thorough",
    max_examples=2000,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
