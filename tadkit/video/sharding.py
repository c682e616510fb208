"""Splitting a list of videos over the ranks of a ``torchrun`` job (``tadkit extract``, ``tadkit data frames``).

Each rank computes the same split from the same inputs, so ranks agree without talking: the share is
a pure function of the video list (its order, its costs) and the world size. Costs are frame counts
read from the container headers; the split is longest-processing-time-first (each video, longest
first, goes to the least-loaded rank; ties to the lower rank), whose largest load is at most the
optimum plus one video, and in practice within a few percent of the mean.

A rerun (after a crash, or on more nodes) computes a new split of the *whole* list and each rank
skips the videos of its share that are already finished, so work done under any world size counts.
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tadkit.utils.io import TEMP_SUFFIX

# Ranks meet only at the end of a job; one may wait there for hours while another finishes a longer
# share (PyTorch's default collective timeout is 30 min).
JOB_TIMEOUT_S = 7 * 24 * 3600.0

__all__ = [
    "JOB_TIMEOUT_S",
    "RankShare",
    "cpu_threads_per_rank",
    "lpt_shares",
    "rank_share",
    "remove_stale_partials",
    "video_cost",
    "write_failure_list",
]


def lpt_shares(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Indices of ``costs`` per rank, each rank's list longest first.

    Longest-processing-time-first: stable on ties (lower index first, then lower rank), so the result
    depends only on the costs and ``world_size``. Non-finite or negative costs count as 0.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    clean = [c if math.isfinite(c) and c > 0 else 0.0 for c in map(float, costs)]
    order = sorted(range(len(clean)), key=lambda i: (-clean[i], i))
    loads = [(0.0, rank) for rank in range(world_size)]  # a heap of (load, rank)
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for index in order:
        load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + clean[index], rank))
    return shares


def video_cost(path: str | Path, fps: float | None = None) -> float:
    """Frames the pipeline will see: the container's frame count (or duration x native fps), or
    duration x ``fps`` when resampling. 0 for a file that cannot be probed: it fails fast on its rank."""
    from tadkit.errors import TadkitError
    from tadkit.video.decode import probe_video

    try:
        info = probe_video(path)
    except TadkitError:
        return 0.0
    duration = info.duration if info.duration and info.duration > 0 else info.num_frames / info.native_fps
    if fps is not None:
        return duration * fps
    return float(info.num_frames) if info.num_frames > 0 else duration * info.native_fps


@dataclass(frozen=True)
class RankShare:
    """This rank's videos (longest first) and what the whole job amounts to."""

    videos: list[Path]
    costs: list[float]  # frames per video of ``videos``
    total_videos: int
    total_cost: float

    @property
    def cost(self) -> float:
        return float(sum(self.costs))


def rank_share(videos: Sequence[Path], rank: int, world_size: int, fps: float | None = None) -> RankShare:
    """The videos ``rank`` of ``world_size`` processes. With one process: all of them, in the given order."""
    if world_size <= 1:
        costs = [video_cost(path, fps) for path in videos]
        return RankShare(list(videos), costs, len(videos), float(sum(costs)))
    costs = [video_cost(path, fps) for path in videos]
    mine = lpt_shares(costs, world_size)[rank]
    return RankShare([videos[i] for i in mine], [costs[i] for i in mine], len(videos), float(sum(costs)))


def cpu_threads_per_rank() -> int:
    """CPU cores available to this process divided by the ranks on this node (``LOCAL_WORLD_SIZE``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    except ValueError:
        local = 1
    return max(1, cores // local)


def write_failure_list(path: Path, failed: dict[str, str]) -> None:
    """This run's failed videos (``{"failed": {video: reason}}``), written atomically; a list from an
    earlier run is removed when nothing failed this time."""
    from tadkit.utils.io import write_json

    if failed:
        write_json(path, {"failed": dict(sorted(failed.items()))})
    else:
        path.unlink(missing_ok=True)


def remove_stale_partials(directory: Path, video_ids: set[str], extensions: tuple[str, ...]) -> int:
    """Delete the temp files a killed run left for ``video_ids`` (``.<id><ext>.<random>.tmp``, the
    names :func:`tadkit.utils.io.atomic_open` writes through); returns how many.

    Each rank calls it for the videos of its own share only, which no other rank writes in this run.
    """
    if not directory.is_dir():
        return 0
    finals = {f"{video}{ext}" for video in video_ids for ext in extensions}
    removed = 0
    for entry in os.scandir(directory):
        name = entry.name
        if name.startswith(".") and name.endswith(TEMP_SUFFIX) and name[1:-len(TEMP_SUFFIX)].rsplit(".", 1)[0] in finals:
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed
