"""One reader per annotation file format; all return :class:`tadkit.data.records.AnnotationSet`.

Use :func:`tadkit.data.annotations.load_annotations` rather than these directly: it detects the
format and applies the subset filter.
"""

from tadkit.data.formats.activitynet import read_activitynet, write_tadkit_json
from tadkit.data.formats.afsd_csv import read_afsd_csv
from tadkit.data.formats.bsn import read_bsn
from tadkit.data.formats.thumos_evalkit import read_thumos_evalkit
from tadkit.data.formats.wtalc import read_wtalc

__all__ = ["read_activitynet", "read_afsd_csv", "read_bsn", "read_thumos_evalkit", "read_wtalc", "write_tadkit_json"]
