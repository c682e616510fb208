"""NMS speed: tadkit's grouped NMS vs plain references, run in the same process on the same data.

    python benchmarks/nms_speed.py [--seed 0] [--sizes 10000 100000] [--many-videos] [--first-call]
                                   [--job] [--job-repeat 3] [--actionformer-ext DIR]

Main table: ONE video, 20 classes, 10k and 100k candidates; hard NMS 0.2, Gaussian soft-NMS
(sigma 0.5, no gate) and linear soft-NMS (gate 0.1), min score 0.001, no cap. "ours" is the
compiled sequential kernel (``TADKIT_NMS_JIT=1``), "NumPy kernels" the pure-NumPy path
(``TADKIT_NMS_JIT=0``).

``--job``: the whole NMS phase of a test job, each contender in a fresh process: 200 videos x
2,000 candidates, per-video Gaussian soft-NMS (sigma 0.5, no gate, min score 0.001) called once per
video, timed from before the NMS code is imported (tadkit's module, or the C++ extension) to the
last video, so start-up counts; torch and the data are loaded before the clock starts. Labels
uniform over 20 classes, and 2 of 20 classes per video (THUMOS-like). Contenders: tadkit's default
path (``auto``) with the kernel cache warm, the same with an empty cache (a machine's first run),
the NumPy kernels, and ActionFormer's C++ op per class as its ``batched_nms`` calls it.
Compared with "numpy loop": a per-class loop, one pick per iteration, vectorized decay (the
official codes' style), whose output must equal both of ours exactly before anything is timed.
``--first-call`` also measures, in fresh interpreters, what the first NMS call of a process costs:
numba's import plus compiling (empty cache) or loading the cached machine code.

``--actionformer-ext DIR`` also times ActionFormer's compiled C++ op (``nms_1d_cpu``, float32,
called once per class as its ``batched_nms`` does) if you built it yourself in DIR (e.g. with
``torch.utils.cpp_extension.load`` from its ``libs/utils/csrc/nms_cpu.cpp``); tadkit never ships
or builds it. Its kept counts are printed for comparison (float32 and its ``>=`` rule may differ
on rare near-ties).

Baselines:
* "python loop": pure Python, one video / one class / one candidate at a time (what a direct
  transcription of the official codes' logic costs without NumPy);
* "numpy per group": the official codes' style (A2Net ``temporal_nms``, AFSD ``softnms_v2``):
  a Python loop over videos and classes, vectorized suppression inside each class.
Each case checks that all implementations return the same detections before timing them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterator

import numpy as np
import torch

from tadkit.data.records import DetectionSet
from tadkit.postprocess.nms import NMSConfig, batched_nms, nms_detection_set, soft_nms_indices


def make_detections(num_videos: int, per_video: int, num_classes: int, seed: int,
                    classes_per_video: int | None = None) -> DetectionSet:
    """Sliding-window-like candidates: clustered around a few true actions per video, heavy overlap.

    ``classes_per_video``: each video draws its labels from that many of the classes (THUMOS
    videos mostly show one or two actions); ``None`` = labels uniform over all classes.
    """
    rng = np.random.default_rng(seed)
    n = num_videos * per_video
    video_of_row = np.repeat(np.arange(num_videos), per_video)
    videos = np.array([f"video_{i:04d}" for i in range(num_videos)], dtype=object)[video_of_row]
    centres = rng.uniform(0, 200, size=(num_videos, 8))
    centre = centres[video_of_row, rng.integers(0, 8, n)] + rng.normal(0, 2.0, n)
    length = rng.uniform(2, 15, n)
    if classes_per_video is None:
        label_index = rng.integers(0, num_classes, n)
    else:
        own = np.stack([rng.choice(num_classes, classes_per_video, replace=False) for _ in range(num_videos)])
        label_index = own[video_of_row, rng.integers(0, classes_per_video, n)]
    labels = np.array([f"class_{c:02d}" for c in range(num_classes)], dtype=object)[label_index]
    return DetectionSet(videos, centre - length / 2, centre + length / 2, labels, rng.random(n))


# ------------------------------------------------------------------ plain Python reference ---- #


def _iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    return inter / union if union > 0 else 0.0


def python_hard(dets: DetectionSet, thr: float, per_class: int | None) -> set[int]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (v, c) in enumerate(zip(dets.video.tolist(), dets.label.tolist())):
        groups.setdefault((v, c), []).append(i)
    start, end, score = dets.start.tolist(), dets.end.tolist(), dets.score.tolist()
    kept: set[int] = set()
    for members in groups.values():
        members.sort(key=lambda i: (-score[i], i))
        chosen: list[int] = []
        for i in members:
            if per_class is not None and len(chosen) == per_class:
                break
            if all(_iou(start[i], end[i], start[k], end[k]) <= thr for k in chosen):
                chosen.append(i)
        kept.update(chosen)
    return kept


def python_soft(dets: DetectionSet, sigma: float, min_score: float, per_class: int) -> dict[int, float]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (v, c) in enumerate(zip(dets.video.tolist(), dets.label.tolist())):
        groups.setdefault((v, c), []).append(i)
    start, end = dets.start.tolist(), dets.end.tolist()
    current = dets.score.tolist()
    out: dict[int, float] = {}
    for members in groups.values():
        pending = [i for i in members if current[i] >= min_score]
        emitted = 0
        while pending and emitted < per_class:
            best = max(pending, key=lambda i: (current[i], -i))
            out[best] = current[best]
            emitted += 1
            pending.remove(best)
            for j in pending:
                iou = _iou(start[j], end[j], start[best], end[best])
                current[j] *= math.exp(-iou * iou / sigma)
            pending = [j for j in pending if current[j] >= min_score]
    return out


# ------------------------------------------------------------ NumPy per-group reference ---- #


def numpy_hard(dets: DetectionSet, thr: float, per_class: int | None) -> set[int]:
    kept: set[int] = set()
    for video in np.unique(dets.video):
        in_video = np.flatnonzero(dets.video == video)
        for label in np.unique(dets.label[in_video]):
            idx = in_video[dets.label[in_video] == label]
            s, e, sc = dets.start[idx], dets.end[idx], dets.score[idx]
            order = np.lexsort((np.arange(len(idx)), -sc))
            chosen = []
            while order.size and (per_class is None or len(chosen) < per_class):
                i = order[0]
                chosen.append(i)
                rest = order[1:]
                inter = np.clip(np.minimum(e[i], e[rest]) - np.maximum(s[i], s[rest]), 0, None)
                union = (e[i] - s[i]) + (e[rest] - s[rest]) - inter
                iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
                order = rest[iou <= thr]
            kept.update(idx[chosen].tolist())
    return kept


def numpy_loop(start: np.ndarray, end: np.ndarray, scores: np.ndarray, labels: np.ndarray, method: str,
               thr: float, sigma: float = 0.5, min_score: float | None = 0.001) -> tuple[np.ndarray, np.ndarray]:
    """Per-class loop, one pick per iteration (argmax, ties -> lower index), vectorized suppression/decay.

    Same conventions as tadkit (hard keeps IoU <= thr; soft decays IoU > thr; hard has no score floor).
    Returns (indices, scores at emission) sorted by score desc, then index.
    """
    out_idx: list[int] = []
    out_val: list[float] = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        s, e, cur = start[idx], end[idx], scores[idx].astype(np.float64)
        pend = np.arange(idx.size)
        if method != "hard" and min_score is not None:
            pend = pend[cur >= min_score]
        while pend.size:
            j = int(np.argmax(cur[pend]))
            p = pend[j]
            out_idx.append(int(idx[p]))
            out_val.append(float(cur[p]))
            pend = np.delete(pend, j)
            inter = np.maximum(np.minimum(e[pend], e[p]) - np.maximum(s[pend], s[p]), 0.0)
            union = (e[pend] - s[pend]) + (e[p] - s[p]) - inter
            iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
            if method == "hard":
                pend = pend[iou <= thr]
                continue
            factor = 1.0 - iou if method == "linear" else np.exp(-(iou * iou) / sigma)
            cur[pend] = np.where(iou > thr, cur[pend] * factor, cur[pend])
            if min_score is not None:
                pend = pend[cur[pend] >= min_score]
    keep, value = np.asarray(out_idx, dtype=np.int64), np.asarray(out_val)
    order = np.lexsort((keep, -value))
    return keep[order], value[order]


def load_actionformer(directory: str | None):
    """ActionFormer's nms_1d_cpu extension from a directory you built it in, or None."""
    if directory is None:
        return None
    sys.path.insert(0, directory)
    try:
        return importlib.import_module("nms_1d_cpu")
    except ImportError as error:
        print(f"(ActionFormer op not loaded from {directory}: {error})")
        return None


def actionformer_per_class(ext, segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, method: str,
                           thr: float, sigma: float = 0.5, min_score: float = 0.001) -> int:
    """ActionFormer's batched_nms inner loop: the compiled op once per class (float32). Returns #kept."""
    kept = 0
    for label in torch.unique(labels):
        idx = torch.where(labels == label)[0]
        s, sc = segs[idx].contiguous(), scores[idx].contiguous()
        if method == "hard":
            kept += len(ext.nms(s, sc, thr))
        else:
            dets = s.new_empty((s.size(0), 3))
            kept += len(ext.softnms(s, sc, dets, thr, sigma, min_score, 2 if method == "gaussian" else 1))
    return kept


def one_video_table(sizes: list[int], seed: int, ext, repeat: int) -> None:
    print(f"ONE video, 20 classes; best of {repeat} each, all timed in this process, interleaved")
    for n in sizes:
        dets = make_detections(1, n, 20, seed)
        labels = np.unique(dets.label, return_inverse=True)[1].astype(np.int64)
        segs = np.stack([dets.start, dets.end], axis=1)
        seg_t, score_t, label_t = torch.from_numpy(segs), torch.from_numpy(dets.score), torch.from_numpy(labels)
        seg32, score32 = seg_t.float().contiguous(), score_t.float().contiguous()
        for method, thr in (("hard", 0.2), ("gaussian", 0.0), ("linear", 0.1)):
            if method == "hard":
                def call():
                    keep = batched_nms(seg_t, score_t, label_t, thr)
                    return keep.numpy(), dets.score[keep.numpy()]
            else:
                def call():
                    keep, value = soft_nms_indices(seg_t, score_t, label_t, method, 0.5, thr, 0.001)
                    return keep.numpy(), value.numpy()

            def ours():
                with jit_mode("1"):
                    return call()

            def numpy_kernels():
                with jit_mode("0"):
                    return call()

            loop = lambda: numpy_loop(dets.start, dets.end, dets.score, labels, method, thr)  # noqa: E731
            ours()  # the first call compiles or loads the kernel: timed separately (--first-call)
            keep, value = ours()
            np_keep, np_value = numpy_kernels()
            t_loop, (ref_keep, ref_value) = timed(loop, 1)
            for name, (k, v) in (("ours", (keep, value)), ("NumPy kernels", (np_keep, np_value))):
                assert np.array_equal(k, ref_keep), f"{method} {n}: {name}' kept set differs from the numpy loop"
                assert np.allclose(v, ref_value, rtol=0, atol=1e-12), f"{method} {n}: {name}' scores differ"
            cpp = None
            if ext is not None:
                cpp = lambda: actionformer_per_class(ext, seg32, score32, label_t, method, thr)  # noqa: E731
            # Interleaved, best of `repeat` each: every contender sees the same load on a shared machine.
            t_ours = t_numpy = t_cpp = math.inf
            kept_cpp = None
            for _ in range(repeat):
                t_ours = min(t_ours, timed(ours, 1)[0])
                t_numpy = min(t_numpy, timed(numpy_kernels, 1)[0])
                if cpp is not None:
                    t, kept_cpp = timed(cpp, 1)
                    t_cpp = min(t_cpp, t)
            times = {"NumPy kernels": t_numpy, "numpy loop": t_loop}
            extra = ""
            if cpp is not None:
                times["ActionFormer C++"] = t_cpp
                extra = f", C++ kept {kept_cpp}"
            report(f"{n // 1000}k, {method:<8} ({len(keep)} kept{extra})", t_ours, times)


@contextlib.contextmanager
def jit_mode(value: str) -> Iterator[None]:
    """Temporarily set ``TADKIT_NMS_JIT`` (read by tadkit on every NMS call)."""
    old = os.environ.get("TADKIT_NMS_JIT")
    os.environ["TADKIT_NMS_JIT"] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ["TADKIT_NMS_JIT"]
        else:
            os.environ["TADKIT_NMS_JIT"] = old


_FIRST_CALL = """
import sys, time
t0 = time.perf_counter()
import numpy as np, torch
from tadkit.postprocess.nms import soft_nms_indices
t1 = time.perf_counter()
rng = np.random.default_rng(0)
segs = torch.from_numpy(np.sort(rng.uniform(0, 200, (10000, 2)), axis=1))
scores, labels = torch.from_numpy(rng.random(10000)), torch.from_numpy(rng.integers(0, 20, 10000))
t2 = time.perf_counter()
soft_nms_indices(segs, scores, labels, "gaussian", 0.5, 0.0, 0.001)
t3 = time.perf_counter()
soft_nms_indices(segs, scores, labels, "gaussian", 0.5, 0.0, 0.001)
t4 = time.perf_counter()
print(t1 - t0, t3 - t2, t4 - t3, "numba" in sys.modules)
"""


def first_call_table() -> None:
    """First NMS call of a fresh process (10k, Gaussian): empty kernel cache, then the cache it wrote."""
    print("first call in a fresh process (10k Gaussian soft-NMS; import = torch + tadkit.postprocess.nms)")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TADKIT_CACHE=cache)
        env.pop("TADKIT_NMS_JIT", None)
        for name, extra in (("JIT=1, empty kernel cache (compiles)", {"TADKIT_NMS_JIT": "1"}),
                            ("JIT=1, cached machine code", {"TADKIT_NMS_JIT": "1"}),
                            ("JIT=0 (NumPy kernels)", {"TADKIT_NMS_JIT": "0"}),
                            ("default (auto)", {})):
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env={**env, **extra}, capture_output=True,
                                 text=True, check=True)
            t_import, t_first, t_second, loaded = out.stdout.split()
            print(f"  {name:<36} import {float(t_import):6.2f} s | first call {float(t_first) * 1e3:8.1f} ms"
                  f" | second call {float(t_second) * 1e3:6.1f} ms | numba loaded: {loaded}")


# The whole-job child: argv = contender, classes per video ("all" or a number), seed, [extension dir].
_JOB = """
import sys, time
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {bench_dir!r})
from nms_speed import make_detections
contender, per_video, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
videos, size = 200, 2000
dets = make_detections(videos, size, 20, seed, None if per_video == "all" else int(per_video))
labels = torch.from_numpy(np.unique(dets.label, return_inverse=True)[1].astype(np.int64))
segs = torch.from_numpy(np.stack([dets.start, dets.end], 1))
scores = torch.from_numpy(dets.score)
if contender == "cpp":
    segs, scores = segs.float(), scores.float()
per_video = [(segs[i * size:(i + 1) * size].contiguous(), scores[i * size:(i + 1) * size].contiguous(),
              labels[i * size:(i + 1) * size].contiguous()) for i in range(videos)]
kept = 0
started = time.perf_counter()
if contender == "cpp":
    sys.path.insert(0, sys.argv[4])
    import nms_1d_cpu
    for s, sc, lab in per_video:  # ActionFormer's batched_nms: the op once per class
        for label in torch.unique(lab):
            idx = torch.where(lab == label)[0]
            cs, csc = s[idx].contiguous(), sc[idx].contiguous()
            kept += len(nms_1d_cpu.softnms(cs, csc, cs.new_empty((cs.size(0), 3)), 0.0, 0.5, 0.001, 2))
else:
    from tadkit.postprocess.nms import soft_nms_indices
    for s, sc, lab in per_video:
        kept += len(soft_nms_indices(s, sc, lab, "gaussian", 0.5, 0.0, 0.001)[0])
print(time.perf_counter() - started, kept, "numba" in sys.modules)
"""


def whole_job_table(seed: int, extension_dir: str | None, repeat: int) -> None:
    """The NMS phase of a 200-video test job per contender, each run in a fresh process (start-up included)."""
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    code = _JOB.format(bench_dir=bench_dir)
    base_env = {k: v for k, v in os.environ.items() if k != "TADKIT_NMS_JIT"}
    subprocess.run([sys.executable, "-m", "tadkit.postprocess.nms_native"], env=base_env, check=True,
                   capture_output=True)  # warm the kernel cache (what any earlier big NMS call leaves behind)
    print(f"whole job: 200 videos x 2,000 candidates, per-video Gaussian soft-NMS, fresh process each, "
          f"start-up included; best of {repeat}, contenders interleaved")
    with tempfile.TemporaryDirectory() as empty:
        contenders = {"tadkit default (warm cache)": ("auto", {}),
                      "tadkit default (empty cache)": ("auto", {"TADKIT_CACHE": empty}),
                      "tadkit NumPy kernels": ("numpy", {"TADKIT_NMS_JIT": "0"})}
        if extension_dir is not None:
            contenders["ActionFormer C++ op"] = ("cpp", {})
        for per_video in ("all", "2"):
            best: dict[str, float] = {name: math.inf for name in contenders}
            kept: dict[str, int] = {}
            for _ in range(repeat):
                for name, (contender, env) in contenders.items():
                    if name.endswith("(empty cache)"):
                        for leftover in os.listdir(empty):  # stays a first run every time
                            shutil.rmtree(os.path.join(empty, leftover))
                    argv = [sys.executable, "-c", code, contender, per_video, str(seed)]
                    argv += [extension_dir] if contender == "cpp" else []
                    out = subprocess.run(argv, env={**base_env, **env}, capture_output=True, text=True, check=True)
                    seconds, count, _ = out.stdout.split()
                    best[name] = min(best[name], float(seconds))
                    kept[name] = int(count)
            ours = {count for name, count in kept.items() if name.startswith("tadkit")}
            assert len(ours) == 1, f"tadkit's paths kept different counts: {kept}"
            label = "labels uniform over 20 classes" if per_video == "all" else "2 of 20 classes per video"
            reference = best.get("ActionFormer C++ op")
            print(f"  {label}:")
            for name, seconds in best.items():
                ratio = f" ({seconds / reference:4.2f}x C++)" if reference else ""
                print(f"    {name:<30} {seconds:6.3f} s{ratio}, {kept[name]} kept")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def report(name: str, ours: float, baselines: dict[str, float]) -> None:
    parts = ", ".join(f"{b} {t * 1e3:8.1f} ms (x{t / ours:6.1f})" for b, t in baselines.items())
    print(f"  {name:<60} ours {ours * 1e3:7.1f} ms | {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="one-video table sizes (none: skip that table)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--many-videos", action="store_true", help="also the older 200-video / loop tables")
    parser.add_argument("--first-call", action="store_true", help="also time the first call of a fresh process")
    parser.add_argument("--job", action="store_true", help="also the whole-job case (fresh processes)")
    parser.add_argument("--job-repeat", type=int, default=3)
    parser.add_argument("--actionformer-ext", metavar="DIR", help="directory holding a built nms_1d_cpu module")
    args = parser.parse_args()
    torch.set_num_threads(1)

    one_video_table(args.sizes, args.seed, load_actionformer(args.actionformer_ext), args.repeat)
    if args.job:
        whole_job_table(args.seed, args.actionformer_ext, args.job_repeat)
    if args.first_call:
        first_call_table()
    if not args.many_videos:
        return

    cases = [
        ("200 videos x 50, 2 of 20 classes per video", make_detections(200, 50, 20, args.seed, 2)),
        ("200 videos x 50, labels uniform over 20", make_detections(200, 50, 20, args.seed)),
        ("1 video x 10k, 20 classes", make_detections(1, 10_000, 20, args.seed)),
        ("1 video x 10k, 1 class", make_detections(1, 10_000, 1, args.seed)),
    ]
    print("per-class hard NMS 0.2, <= 200 kept per class (A2Net); best of 5 (ours) / 1 (baselines)")
    for name, dets in cases:
        cfg = NMSConfig("hard", 0.2, max_per_class=200)
        t_ours, out = timed(lambda: nms_detection_set(dets, cfg), 5)
        t_np, ref_np = timed(lambda: numpy_hard(dets, 0.2, 200), 1)
        t_py, ref_py = timed(lambda: python_hard(dets, 0.2, 200), 1)
        ours_rows = set(zip(out.video, out.start, out.end, out.label))
        assert ours_rows == set(zip(*(dets.select(np.array(sorted(ref_py))).__dict__[k]
                                      for k in ("video", "start", "end", "label")))), "mismatch vs python"
        assert ref_np == ref_py, "numpy reference disagrees"
        report(f"{name} ({len(out)} kept)", t_ours, {"python loop": t_py, "numpy per group": t_np})

    print("per-class Gaussian soft-NMS sigma 0.5, min score 0.001, <= 5000 per class (AFSD)")
    for name, dets in cases[:3]:
        cfg = NMSConfig("gaussian", iou_threshold=0.0, sigma=0.5, min_score=0.001, max_per_class=5000)
        t_ours, out = timed(lambda: nms_detection_set(dets, cfg), 5)
        t_py, ref = timed(lambda: python_soft(dets, 0.5, 0.001, 5000), 1)
        assert len(out) == len(ref)
        assert np.allclose(np.sort(out.score), np.sort(np.fromiter(ref.values(), float)), atol=1e-9)
        report(f"{name} ({len(out)} kept)", t_ours, {"python loop": t_py})


if __name__ == "__main__":
    main()
