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

SPEC_E2E = MethodSpec(
    name="afsd_e2e",
    model="tadkit.methods.afsd.e2e:build_afsd_e2e",
    data_kind="frames",
    output_kind="detections",
    summary="AFSD end to end from decoded frames: I3D backbone (frozen BN) + AFSD head, contrastive loss (CVPR 2021)",
    defaults={"test.nms": {"preset": "afsd"}},
)
