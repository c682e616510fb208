"""ECM: Equivalent Classification Mapping for weakly supervised temporal action localization.

Spec ``methods/ecm.md`` (official code VividLe/Equivalent-Classification-Mapping @ bc89606).

* :mod:`tadkit.methods.ecm.model`: :class:`ECMConfig`, :class:`ECM`, :func:`build_ecm` (model + the 4 losses);
* :mod:`tadkit.methods.ecm.postprocess`: :func:`localize` (CAS -> segments in seconds, official recipe);
* :mod:`tadkit.methods.ecm.official`: :func:`from_official_state_dict` (authors' checkpoints, keys unchanged).

Nothing heavy is imported here: the registry names these as ``"module:attribute"`` strings.
"""

from tadkit.methods.base import MethodSpec

SPEC = MethodSpec(
    name="ecm",
    model="tadkit.methods.ecm.model:build_ecm",
    data_kind="videos",
    output_kind="cas",
    official_importer="tadkit.methods.ecm.official:from_official_state_dict",
    localize="tadkit.methods.ecm.postprocess:localize",
    summary="weakly supervised: equivalent classification mapping, video-level labels only (TPAMI 2022)",
)
