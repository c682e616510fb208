"""Compatibility alias: A2Net lives in :mod:`tadkit.methods.a2net` (model, official import)."""

from tadkit.methods.a2net.model import *  # noqa: F401,F403
from tadkit.methods.a2net.model import (  # noqa: F401  (names the tests and issue 3's API use)
    A2Net,
    A2NetConfig,
    build_a2net,
    strip_module_prefix,
)
from tadkit.methods.a2net.official import from_official_state_dict  # noqa: F401
