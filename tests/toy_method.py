"""A toy method registered from outside tadkit: the worked example of docs/engine.md.

A config names it as ``model.name: toy_method:SPEC``; tadkit imports this module when the name is
first used. The model is the engine tests' per-step classifier (tests/test_engine_support.py).
"""

from tadkit.methods import MethodSpec

SPEC = MethodSpec(
    name="toy_method:SPEC",  # the name checkpoints store; `get_method` finds it again by import
    model="test_engine_support:ToyDetector",
    data_kind="windows",
    output_kind="detections",
    summary="per-step classifier + boundary regressor (tests only)",
    defaults={"test.nms": {"preset": "a2net"}},
)
