"""A2Net (Yang et al., IEEE TIP 2020): anchor-free + anchor-based, fully supervised, on feature windows.

``model.py`` (config, modules, targets, losses, decoding; the numbered deviation list),
``official.py`` (the authors' checkpoints). Spec: ``methods/a2net.md``; docs: ``docs/a2net.md``.
"""

from tadkit.methods.base import MethodSpec

SPEC = MethodSpec(
    name="a2net",
    model="tadkit.methods.a2net.model:build_a2net",
    data_kind="windows",
    output_kind="detections",
    official_importer="tadkit.methods.a2net.official:from_official_state_dict",
    summary="anchor-free + anchor-based detector on I3D feature windows (IEEE TIP 2020)",
    defaults={"test.nms": {"preset": "a2net"}},
)
