"""ActionFormer (Zhang, Wu and Li, ECCV 2022): local-window transformer pyramid, single-stage anchor-free.

Modules: :mod:`.model` (network, :class:`~.model.ActionFormerConfig` with the official option names,
``forward_heads``; its numbered deviation list), :mod:`.official` (the authors' checkpoints),
:mod:`.points`, :mod:`.targets`, :mod:`.losses`, :mod:`.inference` (per-video decoding), :mod:`.method`
(the engine protocol; its own deviation list). Nothing is imported here so that ``import tadkit.methods.actionformer`` stays cheap.
Docs: ``docs/actionformer.md``.
"""

from tadkit.methods.base import MethodSpec

SPEC = MethodSpec(
    name="actionformer",
    model="tadkit.methods.actionformer.method:build_actionformer_method",
    data_kind="windows",  # whole videos with data.mode: video (tadkit.data.truncate)
    output_kind="detections",
    official_importer="tadkit.methods.actionformer.method:from_official_state_dict",
    summary="local-window transformer pyramid, anchor-free, whole videos (ECCV 2022)",
    defaults={},  # its soft-NMS + voting runs per video inside decode: no second NMS
)
