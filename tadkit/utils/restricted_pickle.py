"""Reading pickles that come from other people without running them.

A pickle names the callables that rebuild its objects, so loading one can run any code. The files
tadkit must read as pickles -- DeepMind's I3D checkpoint (nested dicts of arrays) and W-TALC's
object-array annotation ``.npy`` files (lists of strings, numbers and small arrays) -- go through
:class:`ArrayUnpickler`, which resolves only the NumPy globals an array needs (plus ``_codecs.encode``,
which Python 3 pickles use for ``bytes``) and refuses every other global with a TadkitError.
"""

from __future__ import annotations

import codecs
import os
import pickle
from typing import Any

import numpy as np

from tadkit.errors import TadkitError


def _numpy_globals() -> dict[tuple[str, str], Any]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, wherever it lives
    scalar = np.float64(0).__reduce__()[0]  # numpy's scalar(dtype, bytes): rebuilds a NumPy scalar
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    # Pickles written by NumPy 1.x name numpy.core, NumPy 2.x numpy._core: accept both spellings.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    allowed[("_codecs", "encode")] = codecs.encode  # str -> bytes; how protocol-2 pickles spell bytes
    return allowed


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler for plain data and NumPy arrays (dicts, lists, strings, numbers): any other global is refused."""

    _allowed = _numpy_globals()

    def __init__(self, file, *, source: str = "", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise TadkitError(
                f"pickle references {module}.{name}; only NumPy arrays and plain data are accepted (refused, "
                "nothing was run)",
                file=self.source,
                field="pickle",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise TadkitError("pickle uses persistent ids; refused", file=self.source, field="pickle")


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` file; an object array is unpickled by :class:`ArrayUnpickler` (Python 2 pickles'
    strings come back as bytes). Raises TadkitError naming ``path`` for unreadable files."""
    from numpy.lib import format as npy_format

    source = str(path)
    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            reader = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(version)
            if reader is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = reader(handle)
            if not dtype.hasobject:
                handle.seek(0)
                return np.load(handle, allow_pickle=False)
            array = ArrayUnpickler(handle, source=source, encoding="bytes").load()
    except TadkitError:
        raise
    except Exception as error:  # noqa: BLE001 - malformed files raise many types (ValueError, EOFError, ...)
        raise TadkitError(f"cannot load: {type(error).__name__}: {error}"[:300], file=source) from None
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise TadkitError(f"the pickled array does not match the .npy header (shape {shape})", file=source)
    return array


__all__ = ["ArrayUnpickler", "load_npy"]
