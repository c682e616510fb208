"""The compiled NMS kernel: numba compiles it once per machine, later processes load the machine code alone.

Why not numba's own ``cache=True``: loading a cached numba function still starts numba's compiler
(importing numba, registering every typing and lowering registry, importing ``scipy.linalg`` for
its BLAS check): 0.5 s on an idle 2-core machine, 2-3 s under load. That alone exceeds the whole
NMS phase of a realistic test job (200 videos x 2,000 candidates) with ActionFormer's compiled C++
op. So the kernel is a numba ``cfunc`` over raw pointers (no allocation, no exceptions: nothing
that needs numba's runtime), its optimized LLVM IR is turned into an object file once, and a
process loads that object with llvmlite (numba's own LLVM binding, ~0.1 s) and calls it through
ctypes. Compiling stays numba's job; only the reload is ours.

Cache: ``$TADKIT_CACHE/nms`` (default ``~/.cache/tadkit/nms``); when that cannot be written (a
read-only home), ``<tempdir>/tadkit-<uid>/nms``. A directory is used only if it is owned by this
user and writable by nobody else (the object file is machine code this process runs). Files are
named by a key over the kernel's source, the numba and llvmlite versions and the host CPU, so a
change of any of them compiles afresh; writes are atomic. With no usable directory the kernel is
compiled in memory for the process.

The ``numba_*`` / ``NRT_*`` helpers referenced by the cfunc's error path (unreachable: the kernel
raises nothing and touches no reference-counted memory) are renamed in the IR to private names
bound to ``abort``, so loading needs nothing from numba and never rebinds numba's own
(process-wide) symbols in a process that also runs numba code; every other external symbol is
checked to resolve before the object is added, since LLVM aborts the process on an unresolved one.
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BLOCK = 32  # candidates per block of the tournament tree
FORMAT = "tadkit-nms-native/2"
# External symbols the object may reference that must resolve in this process (libm / libc / CPython).
_LIBRARY_SYMBOLS = ("exp", "memset", "memcpy", "memmove")
_NUMBA_HELPER_PREFIXES = ("numba_", "NRT_")
_UNREACHABLE_PREFIX = "tadkit_nms_unreachable_"  # + a numba helper's name, bound to abort()


def greedy_core(  # pragma: no cover - runs compiled; tested through both NMS paths
    start: np.ndarray, end: np.ndarray, score: np.ndarray, groups: np.ndarray, by_start: np.ndarray,
    num_groups: int, method: int, sigma: float, thr: float, has_high: bool, thr_high: float,
    min_score: float, cap: int, keep_last: bool, off: float,
    bounds: np.ndarray, fill: np.ndarray, rows: np.ndarray, s: np.ndarray, e: np.ndarray, cur: np.ndarray,
    reach: np.ndarray, bmax: np.ndarray, bidx: np.ndarray, bpos: np.ndarray, tree: np.ndarray,
    out_rows: np.ndarray, out_value: np.ndarray,
) -> int:
    """The greedy loop (hard: ``method=0``; linear soft: 1; Gaussian soft: 2) for every group.

    ``groups`` are dense ids in ``[0, num_groups)``, ``by_start`` = ``argsort(start)``; candidates
    scoring below ``min_score`` are left out. The caller allocates every buffer (see
    :func:`_buffers`); ``bounds`` must be zero. A counting sort by group (stable, so each group stays
    in start order) lays the candidates out group after group. A pick can only change candidates
    with a positive intersection (IoU 0 never passes a gate >= 0, and a negative BSN gate multiplies
    by exactly 1); they lie between two binary searches (on the starts, and on the running maximum
    of the ends), widened by ``2 * off`` so rounding cannot cut one off. The best pending candidate
    (score desc, input index asc) comes from a tournament tree over blocks of 32 candidates; after
    a pick only the blocks of its window are refreshed. IoU and decay use the floating-point
    expressions of :func:`tadkit.ops.tiou` and the NumPy kernels, in the same order.
    Writes (input indices, scores at emission) in emission order; returns how many.
    """
    for i in range(score.size):
        if score[i] >= min_score:
            bounds[groups[i] + 1] += 1
    for g in range(num_groups):
        bounds[g + 1] += bounds[g]
        fill[g] = bounds[g]
    n = bounds[num_groups]
    for i in by_start:
        if score[i] >= min_score:
            j = fill[groups[i]]
            fill[groups[i]] += 1
            rows[j], s[j], e[j], cur[j] = i, start[i], end[i], score[i]
    if n == 0:
        return 0
    dead = -np.inf
    big = n + score.size  # larger than every input index
    B = 32
    k = 0
    for g in range(num_groups):
        lo, hi = bounds[g], bounds[g + 1]
        m = hi - lo
        if m == 0:
            continue
        r = -np.inf
        for j in range(lo, hi):
            if e[j] > r:
                r = e[j]
            reach[j] = r
        nb = (m + B - 1) // B
        p2 = 1
        while p2 < nb:
            p2 *= 2
        for b in range(p2):
            if b < nb:
                best, best_row, best_pos = dead, big, -1
                for j in range(lo + b * B, min(lo + (b + 1) * B, hi)):
                    c = cur[j]
                    if c > best or (c == best and c != dead and rows[j] < best_row):
                        best, best_row, best_pos = c, rows[j], j
                bmax[b], bidx[b], bpos[b] = best, best_row, best_pos
                tree[p2 + b] = b
            else:
                tree[p2 + b] = -1
        for node in range(p2 - 1, 0, -1):
            x, y = tree[2 * node], tree[2 * node + 1]
            if y >= 0 and (x < 0 or bmax[y] > bmax[x] or (bmax[y] == bmax[x] and bidx[y] < bidx[x])):
                x = y
            tree[node] = x
        pending = m
        emitted = 0
        while True:
            top = tree[1]
            if top < 0 or bmax[top] == dead:
                break
            if not keep_last and pending == 1:  # AFSD: the last pending candidate is never emitted
                break
            p = bpos[top]
            out_rows[k] = rows[p]
            out_value[k] = cur[p]
            k += 1
            cur[p] = dead
            pending -= 1
            emitted += 1
            if cap >= 0 and emitted >= cap:
                break
            sp, ep = s[p], e[p]
            len_p = ep - sp + off
            gate = thr + (thr_high - thr) * (ep - sp) if has_high else thr
            # window: reach[j] >= sp - 2 off (first such j) .. s[j] <= ep + 2 off (last such j)
            a, z = lo, hi
            while a < z:
                mid = (a + z) // 2
                if reach[mid] >= sp - 2.0 * off:
                    z = mid
                else:
                    a = mid + 1
            first = a
            a, z = first, hi
            while a < z:
                mid = (a + z) // 2
                if s[mid] <= ep + 2.0 * off:
                    a = mid + 1
                else:
                    z = mid
            last = a  # exclusive
            for j in range(first, last):
                c = cur[j]
                if c == dead:
                    continue
                inter = min(e[j], ep) - max(s[j], sp) + off
                if inter <= 0.0:
                    continue  # IoU 0: never suppressed, factor exactly 1
                union = (e[j] - s[j] + off) + len_p - inter
                if union <= 0.0:
                    continue
                iou = inter / union
                if method == 0:
                    if iou > thr:
                        cur[j] = dead
                        pending -= 1
                elif iou > gate:
                    if method == 1:
                        c = c * (1.0 - iou)
                    else:
                        c = c * np.exp(-(iou * iou) / sigma)
                    if c < min_score:
                        cur[j] = dead
                        pending -= 1
                    else:
                        cur[j] = c
            b0 = (min(first, p) - lo) // B
            b1 = (max(last - 1, p) - lo) // B
            for b in range(b0, b1 + 1):
                best, best_row, best_pos = dead, big, -1
                for j in range(lo + b * B, min(lo + (b + 1) * B, hi)):
                    c = cur[j]
                    if c > best or (c == best and c != dead and rows[j] < best_row):
                        best, best_row, best_pos = c, rows[j], j
                bmax[b], bidx[b], bpos[b] = best, best_row, best_pos
            n0, n1 = (p2 + b0) // 2, (p2 + b1) // 2
            while n1 >= 1:
                for node in range(n0, n1 + 1):
                    x, y = tree[2 * node], tree[2 * node + 1]
                    if y >= 0 and (x < 0 or bmax[y] > bmax[x] or (bmax[y] == bmax[x] and bidx[y] < bidx[x])):
                        x = y
                    tree[node] = x
                if n1 == 1:
                    break
                n0, n1 = n0 // 2, n1 // 2
    return k


def _cfunc_entry(start_p, end_p, score_p, groups_p, by_start_p, n_in, num_groups, method, sigma, thr,  # pragma: no cover
                 has_high, thr_high, min_score, cap, keep_last, off, n, num_blocks, tree_size,
                 fwork_p, iwork_p, out_rows_p, out_value_p):
    """C entry point: raw pointers -> array views (numba ``carray``, no allocation) -> :func:`greedy_core`.

    ``fwork`` holds s, e, cur, reach (``n`` each) then bmax (``num_blocks``); ``iwork`` holds bounds
    (``num_groups + 1``, zeroed by the caller), fill (``num_groups``), rows (``n``), bidx and bpos
    (``num_blocks`` each) and the tree (``tree_size``).
    """
    carray = _carray
    fwork = carray(fwork_p, (4 * n + num_blocks,))
    iwork = carray(iwork_p, (2 * num_groups + 1 + n + 2 * num_blocks + tree_size,))
    g1 = num_groups + 1
    r0 = g1 + num_groups
    b0 = r0 + n
    return _core(
        carray(start_p, (n_in,)), carray(end_p, (n_in,)), carray(score_p, (n_in,)), carray(groups_p, (n_in,)),
        carray(by_start_p, (n_in,)), num_groups, method, sigma, thr, has_high != 0, thr_high, min_score, cap,
        keep_last != 0, off,
        iwork[:g1], iwork[g1:r0], iwork[r0:b0], fwork[:n], fwork[n:2 * n], fwork[2 * n:3 * n], fwork[3 * n:4 * n],
        fwork[4 * n:], iwork[b0:b0 + num_blocks], iwork[b0 + num_blocks:b0 + 2 * num_blocks],
        iwork[b0 + 2 * num_blocks:], carray(out_rows_p, (n,)), carray(out_value_p, (n,)),
    )


# Set by compile_kernel before compiling _cfunc_entry (numba freezes globals at compile time).
_core: Any = None  # njit(greedy_core)
_carray: Any = None  # numba.carray
_C_ARGTYPES = ([ctypes.c_void_p] * 5 + [ctypes.c_int64] * 3 + [ctypes.c_double] * 2 + [ctypes.c_int64, ctypes.c_double,
               ctypes.c_double, ctypes.c_int64, ctypes.c_int64, ctypes.c_double] + [ctypes.c_int64] * 3
               + [ctypes.c_void_p] * 4)


@dataclass
class NativeKernel:
    """A loaded kernel: ``__call__`` runs greedy NMS over all groups (see :func:`greedy_core`)."""

    function: Any  # ctypes function
    engine: Any = None  # the llvmlite execution engine owning the machine code (kept alive with it)
    source: str = ""  # "cache" (loaded from disk) or "compiled" (numba, this process)

    def __call__(self, start: np.ndarray, end: np.ndarray, score: np.ndarray, groups: np.ndarray, num_groups: int,
                 by_start: np.ndarray, method: int, sigma: float, thr: float, has_high: bool, thr_high: float,
                 min_score: float, cap: int, keep_last: bool, off: float) -> tuple[np.ndarray, np.ndarray]:
        kept = score >= min_score
        n = int(np.count_nonzero(kept))
        widest = int(np.bincount(groups[kept], minlength=num_groups).max()) if n else 0
        num_blocks = (widest + BLOCK - 1) // BLOCK
        tree_size = 2 * (1 << max(num_blocks - 1, 0).bit_length())
        fwork = np.empty(4 * n + num_blocks, dtype=np.float64)
        iwork = np.zeros(2 * num_groups + 1 + n + 2 * num_blocks + tree_size, dtype=np.int64)
        out_rows = np.empty(n, dtype=np.int64)
        out_value = np.empty(n, dtype=np.float64)
        count = self.function(
            start.ctypes.data, end.ctypes.data, score.ctypes.data, groups.ctypes.data, by_start.ctypes.data,
            score.size, num_groups, method, sigma, thr, int(has_high), thr_high, min_score, cap, int(keep_last), off,
            n, num_blocks, tree_size, fwork.ctypes.data, iwork.ctypes.data, out_rows.ctypes.data,
            out_value.ctypes.data,
        )
        return out_rows[:count], out_value[:count]


# --------------------------------------------------------------------------------------------- #
# Cache directory and key
# --------------------------------------------------------------------------------------------- #


def _private_dir(directory: Path) -> Path | None:
    """``directory`` (created 0700 if missing) when it is ours and writable by nobody else, else None."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = directory.stat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".probe.", delete=True)
        probe.close()
        return directory
    except OSError:
        return None


def cache_dirs() -> list[Path]:
    """Where the machine code may live, in order: ``$TADKIT_CACHE/nms`` (default ``~/.cache/tadkit/nms``),
    then ``<tempdir>/tadkit-<uid>/nms``."""
    base = os.environ.get("TADKIT_CACHE")
    home = Path(base).expanduser() if base else Path.home() / ".cache" / "tadkit"
    return [home / "nms", Path(tempfile.gettempdir()) / f"tadkit-{os.getuid()}" / "nms"]


def _readable_dir(directory: Path) -> bool:
    try:
        info = directory.stat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def _host() -> tuple[Any, str, str, str]:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm, llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def cache_key() -> str:
    """Kernel source + numba / llvmlite versions + host triple, CPU and features (16 hex digits)."""
    from importlib.metadata import version

    _, triple, cpu, features = _host()
    parts = [FORMAT, inspect.getsource(greedy_core), inspect.getsource(_cfunc_entry), version("numba"),
             version("llvmlite"), triple, cpu, features, sys.platform]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _target_machine(llvm: Any, cpu: str, features: str) -> Any:
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=3, reloc="pic", codemodel="default")


# --------------------------------------------------------------------------------------------- #
# Load (llvmlite only) and build (numba)
# --------------------------------------------------------------------------------------------- #


def _load_object(obj: bytes, meta: dict[str, Any], source: str) -> NativeKernel | None:
    """Machine code -> callable kernel; None when a symbol it needs does not resolve here."""
    llvm, _, cpu, features = _host()
    process = ctypes.CDLL(None)  # dlopen(NULL): this process and the libraries it loaded (libm, libc, CPython)
    abort = _address(process, "abort")
    for name in meta["external"]:
        if name.startswith(_NUMBA_HELPER_PREFIXES):
            return None  # an object written before helpers were renamed: never bind numba's names
        address = abort if name.startswith(_UNREACHABLE_PREFIX) else _address(process, name)
        if not address:
            return None  # LLVM would abort the process on an unresolved symbol
        llvm.add_symbol(name, address)  # renamed numba helpers: their error path is unreachable (module docstring)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine(llvm, cpu, features))
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    address = engine.get_function_address(meta["symbol"])
    if not address:
        return None
    function = ctypes.CFUNCTYPE(ctypes.c_int64, *_C_ARGTYPES)(address)
    return NativeKernel(function, engine, source)


def _address(library: ctypes.CDLL, name: str) -> int | None:
    try:
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value
    except AttributeError:
        return None


def load_cached() -> NativeKernel | None:
    """The kernel from the cache (no numba import), or None when no valid cached copy exists."""
    try:
        key = cache_key()
        for directory in cache_dirs():
            obj_path, meta_path = directory / f"{key}.o", directory / f"{key}.json"
            if not (_readable_dir(directory) and obj_path.is_file() and meta_path.is_file()):
                continue
            if obj_path.stat().st_uid != os.getuid():
                continue
            meta = json.loads(meta_path.read_text())
            obj = obj_path.read_bytes()
            if meta.get("format") != FORMAT or meta.get("sha256") != hashlib.sha256(obj).hexdigest():
                continue
            kernel = _load_object(obj, meta, "cache")
            if kernel is not None:
                return kernel
    except Exception:  # unreadable cache, missing llvmlite, an LLVM refusal: compile afresh or use NumPy
        return None
    return None


def may_be_cached() -> bool:
    """Whether any cache directory holds a kernel (a cheap listing, no LLVM): worth a :func:`load_cached`."""
    for directory in cache_dirs():
        try:
            if any(directory.glob("*.o")):
                return True
        except OSError:
            continue
    return False


def compile_kernel() -> tuple[bytes, dict[str, Any]]:
    """numba: greedy_core + the C entry -> optimized LLVM IR -> an object file for this host."""
    global _core, _carray
    import numba
    from numba import types

    _carray = numba.carray
    _core = numba.njit(nogil=True, error_model="numpy")(greedy_core)
    f64p, i64p = types.CPointer(types.float64), types.CPointer(types.int64)
    signature = types.int64(
        f64p, f64p, f64p, i64p, i64p, types.int64, types.int64, types.int64, types.float64, types.float64,
        types.int64, types.float64, types.float64, types.int64, types.int64, types.float64,
        types.int64, types.int64, types.int64, f64p, i64p, i64p, f64p,
    )
    entry = numba.cfunc(signature, nopython=True, error_model="numpy")(_cfunc_entry)
    llvm, _, cpu, features = _host()
    module = llvm.parse_assembly(entry.inspect_llvm())
    module.verify()
    declared = [*module.functions, *module.global_variables]
    for value in declared:  # private names: binding them must not touch numba's own (process-wide) symbols
        if value.is_declaration and value.name.startswith(_NUMBA_HELPER_PREFIXES):
            value.name = _UNREACHABLE_PREFIX + value.name
    external = sorted({v.name for v in declared if v.is_declaration and not v.name.startswith("llvm.")}
                      | set(_LIBRARY_SYMBOLS))
    obj = _target_machine(llvm, cpu, features).emit_object(module)
    meta = {"format": FORMAT, "symbol": entry.native_name, "external": external,
            "sha256": hashlib.sha256(obj).hexdigest()}
    return obj, meta


def _store(obj: bytes, meta: dict[str, Any], key: str) -> None:
    """Write into the first usable cache directory (atomically); silently none when none is usable."""
    from tadkit.utils.io import atomic_open

    for directory in cache_dirs():
        if _private_dir(directory) is None:
            continue
        try:
            with atomic_open(directory / f"{key}.o", "wb") as handle:
                handle.write(obj)
            with atomic_open(directory / f"{key}.json", "w", encoding="utf-8") as handle:
                json.dump(meta, handle)
            return
        except Exception:  # full disk, raced permissions: try the next one, else keep it in memory
            continue


def build() -> NativeKernel:
    """Compile with numba, store the machine code for later processes, load it. Raises on failure."""
    obj, meta = compile_kernel()
    _store(obj, meta, cache_key())
    kernel = _load_object(obj, meta, "compiled")
    if kernel is None:
        raise RuntimeError(f"compiled NMS kernel references unresolvable symbols {meta['external']}")
    return kernel


if __name__ == "__main__":  # `python -m tadkit.postprocess.nms_native`: build the cache ahead of time
    kernel = load_cached() or build()
    print(f"tadkit NMS kernel ready ({kernel.source}); cache key {cache_key()} in {[str(d) for d in cache_dirs()]}")
