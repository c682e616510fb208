"""ACRNet (Ren et al., ICME 2023): weakly supervised TAL with adaptive clustering and refining.

Spec ``methods/acrnet.md`` (official code leftthomas/ACRNet @ 5718240); docs: ``docs/acrnet.md``.

* :mod:`tadkit.methods.acrnet.model`: :class:`ACRNetConfig`, :class:`ACRNet`, :func:`build_acrnet`, the losses
  (numbered deviation list at the top, incl. the ``mca_merge`` option);
* :mod:`tadkit.methods.acrnet.clustering`: adaptive temporal clustering, mask refining, video scores (vectorised);
* :mod:`tadkit.methods.acrnet.postprocess`: :func:`localize` (segment scores -> seconds), ``drop_ambiguous``;
* :mod:`tadkit.methods.acrnet.sampling`: :func:`acrnet_sample_indices` (random per-bin / uniform);
* :mod:`tadkit.methods.acrnet.official`: :func:`from_official_state_dict` (authors' checkpoints, keys unchanged).

Nothing heavy is imported here: the registry names these as ``"module:attribute"`` strings.
"""

from tadkit.methods.base import MethodSpec

SPEC = MethodSpec(
    name="acrnet",
    model="tadkit.methods.acrnet.model:build_acrnet",
    data_kind="videos",
    output_kind="cas",
    official_importer="tadkit.methods.acrnet.official:from_official_state_dict",
    localize="tadkit.methods.acrnet.postprocess:localize",
    summary="weakly supervised: cross-modal attention, adaptive clustering + mask refining (ICME 2023)",
    defaults={"test.cas": {"preset": "thumos14"}, "data.resample_mode": "acrnet"},
)
