"""AFSD (Lin et al., CVPR 2021): anchor-free localization with salient boundary refinement.

Modules: :mod:`.boundary_pooling` (boundary max pooling in plain PyTorch), :mod:`.model` (the network
after the I3D backbone, and the feature variant :class:`~.model.AFSDFeatures`), :mod:`.targets`,
:mod:`.losses`, :mod:`.inference`, :mod:`.official` (authors' checkpoints). Nothing is imported here so
that ``import tadkit.methods.afsd`` stays cheap.
"""

from tadkit.methods.base import MethodSpec

SPEC = MethodSpec(
    name="afsd",
    model="tadkit.methods.afsd.model:build_afsd",
    data_kind="windows",
    output_kind="detections",
    official_importer="tadkit.methods.afsd.official:from_official_state_dict",
    summary="anchor-free detector with salient boundary refinement, feature variant (CVPR 2021; OpenTAD recipe)",
    defaults={"test.nms": {"preset": "afsd"}},
)
