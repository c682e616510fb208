"""`tadkit extract` over many videos: this rank's share, decoding in DataLoader workers, atomic outputs.

One process runs :func:`run_extraction` on the videos :func:`tadkit.video.sharding.rank_share` gives
it. Decoding (PyAV, resize/crop, TV-L1 flow) happens in ``workers`` DataLoader worker processes
(``workers=0``: in this process, between forward passes) while this process runs the network; each
worker takes whole videos and sends batches of stacks, so the network never waits on one slow video
while another worker has input ready. Each video is written as ``<id>.npy`` then ``<id>.json`` (both
atomically; the JSON marks the video done), so a killed run leaves no partial file under a final name.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tadkit.errors import TadkitError
from tadkit.video.extract import ExtractSettings, StackReader, features_of, finished, weights_description
from tadkit.video.sharding import RankShare, remove_stale_partials

__all__ = ["ExtractOptions", "ExtractSummary", "RankProgress", "VideoStacks", "run_extraction"]

# messages a decoder sends for video ``index`` of the share
STACKS, DONE, FAILED = "stacks", "done", "failed"


@dataclass(frozen=True)
class ExtractOptions:
    batch: int = 1  # stacks per forward pass
    workers: int = 0  # DataLoader worker processes decoding videos (0: decode in this process)
    amp: bool = False  # float16 autocast for the network (CUDA only)
    overwrite: bool = False
    progress: bool = True
    annotate: Callable[[dict], dict] | None = None  # a release preset's sidecar time mapping (tadkit.video.presets)


@dataclass
class ExtractSummary:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason
    frames: int = 0  # frames decoded for the written videos
    seconds: float = 0.0  # wall time of the loop
    decode_seconds: float = 0.0  # time spent decoding (in workers, or inline)
    network_seconds: float = 0.0  # time spent in the network (forward + copies)

    def as_dict(self) -> dict[str, Any]:
        return {"written": self.written, "skipped": self.skipped, "failed": self.failed, "frames": self.frames,
                "seconds": self.seconds, "decode_seconds": self.decode_seconds,
                "network_seconds": self.network_seconds}


class VideoStacks(IterableDataset):
    """Decoder messages for a list of videos (iterated here, or by DataLoader workers).

    Worker ``w`` of ``n`` decodes videos ``w, w + n, ...``. Messages are tuples:
    ``(STACKS, index, rgb, flow, starts, decode_seconds)`` per batch of stacks, then
    ``(DONE, index, reader)`` (the :class:`StackReader`, which knows the frame count) or
    ``(FAILED, index, reason)``. A failing video ends with FAILED and the worker goes on.
    """

    def __init__(self, videos: list[Path], settings: ExtractSettings, batch: int) -> None:
        super().__init__()
        self.videos = [Path(v) for v in videos]
        self.settings = settings
        self.batch = batch

    def _mine(self) -> range:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return range(worker, len(self.videos), workers)

    def __iter__(self) -> Iterator[tuple]:
        for index in self._mine():
            path = self.videos[index]
            try:
                reader = StackReader(path, self.settings, self.batch)
                batches = iter(reader)
                while True:
                    start = time.perf_counter()
                    inputs = next(batches, None)
                    spent = time.perf_counter() - start
                    if inputs is None:
                        break
                    yield STACKS, index, inputs.rgb, inputs.flow, inputs.starts, spent
            except TadkitError as error:
                yield FAILED, index, str(error)
                continue
            except Exception as error:  # noqa: BLE001 - one broken video must not stop the others
                yield FAILED, index, f"file {path}, video {path.stem}: {type(error).__name__}: {error}"
                continue
            yield DONE, index, reader


class RankProgress:
    """Plain progress lines of one rank: videos done / total, frames/s; rank 0 adds the job estimate.

    The job estimate assumes every rank's share costs about the same (the shares are balanced by
    frame count): the job is as far along as rank 0's share, measured in frames.
    """

    def __init__(self, share: RankShare, rank: int, world_size: int, *, enabled: bool = True,
                 min_interval_s: float = 30.0, file: Any = None) -> None:
        self.share, self.rank, self.world_size = share, rank, world_size
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.file = file
        self.start = time.monotonic()
        self.last = -float("inf")
        self.videos = 0
        self.frames = 0
        self.cost_done = 0.0

    def video_finished(self, cost: float, frames: int = 0) -> None:
        self.videos += 1
        self.frames += frames
        self.cost_done += cost
        now = time.monotonic()
        if self.videos == len(self.share.videos) or now - self.last >= self.min_interval_s:
            self.last = now
            self.emit(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((time.monotonic() if now is None else now) - self.start, 1e-9)
        where = f" [rank {self.rank}/{self.world_size}]" if self.world_size > 1 else ""
        text = (f"extract{where}: {self.videos}/{len(self.share.videos)} videos, {self.frames} frames, "
                f"{self.frames / elapsed:.1f} frames/s")
        own_cost = self.share.cost
        if self.rank == 0 and own_cost > 0 and self.cost_done > 0:
            fraction = min(self.cost_done / own_cost, 1.0)
            left = elapsed * (1.0 - fraction) / fraction
            job = f"job of {self.share.total_videos} videos on {self.world_size} ranks: " if self.world_size > 1 else ""
            text += f"; {job}~{100 * fraction:.0f}% done, ~{left:.0f} s left"
        return text

    def emit(self, line: str) -> None:
        if self.enabled:
            print(line, file=self.file if self.file is not None else sys.stderr, flush=True)


def _write_video(out_dir: Path, reader: StackReader, chunks: list[np.ndarray], starts: list[float], weights: str,
                 annotate: Callable[[dict], dict] | None = None) -> None:
    from tadkit.utils.io import numpy_save, write_json

    features = np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)
    meta = reader.metadata(features, starts, weights)
    claimed = meta.get("container_duration")
    if claimed and meta["duration"] < 0.9 * claimed:
        print(f"tadkit extract: warning: {reader.video}: decoded {meta['duration']:.1f} s of the "
              f"{claimed:.1f} s the container declares (truncated or corrupt file?)", file=sys.stderr)
    if annotate is not None:
        meta = annotate(meta)
    numpy_save(out_dir / f"{reader.video}.npy", features)
    write_json(out_dir / f"{reader.video}.json", meta)  # written last: its presence marks the video done


def _messages(stacks: VideoStacks, workers: int, pin_memory: bool) -> Iterator[tuple]:
    """Decoder messages, from worker processes when ``workers > 0`` (shut down when this ends)."""
    if workers == 0:
        yield from stacks
        return
    # spawn, not fork: this process may hold a gloo process group's threads, which fork does not copy
    loader = DataLoader(stacks, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                        multiprocessing_context="spawn", prefetch_factor=2)
    iterator = iter(loader)
    try:
        yield from iterator
    finally:
        iterator._shutdown_workers()  # workers and the pin-memory thread end here, not at interpreter exit
        del iterator


def run_extraction(
    share: RankShare,
    out_dir: Path,
    settings: ExtractSettings,
    model: Any,
    flow_model: Any = None,
    options: ExtractOptions = ExtractOptions(),
    *,
    rank: int = 0,
    world_size: int = 1,
) -> ExtractSummary:
    """Extract every video of ``share`` not finished yet into ``out_dir``; failures are collected."""
    import torch

    settings.validate()
    if options.batch < 1:
        raise TadkitError(f"--batch must be >= 1, got {options.batch}", field="batch")
    if options.workers < 0:
        raise TadkitError(f"--workers must be >= 0, got {options.workers}", field="workers")
    summary = ExtractSummary()
    todo: list[Path] = []
    costs: list[float] = []
    for path, cost in zip(share.videos, share.costs):
        if not options.overwrite and finished(out_dir, path.stem, settings):
            summary.skipped.append(path.stem)
        else:
            todo.append(path)
            costs.append(cost)
    remove_stale_partials(out_dir, {path.stem for path in todo}, (".npy", ".json"))  # left by a killed run
    device = next(next(m for m in (model, flow_model) if m is not None).parameters()).device
    cuda = device.type == "cuda"
    weights = weights_description(model, flow_model, settings.streams)
    tracker = RankProgress(RankShare(todo, costs, share.total_videos, share.total_cost), rank, world_size,
                           enabled=options.progress)
    pending: dict[int, tuple[list[np.ndarray], list[float]]] = {}
    start = time.perf_counter()
    for message in _messages(VideoStacks(todo, settings, options.batch), options.workers, pin_memory=cuda):
        kind, index = message[0], message[1]
        video = todo[index].stem
        if kind == STACKS:
            _, _, rgb, flow, starts, decode_seconds = message
            summary.decode_seconds += decode_seconds
            chunks, times = pending.setdefault(index, ([], []))
            tick = time.perf_counter()
            batch = _Batch(rgb, flow)
            chunks.append(features_of(batch, model, flow_model, non_blocking=cuda, amp=options.amp))
            summary.network_seconds += time.perf_counter() - tick
            times.extend(float(t) for t in starts)
        elif kind == DONE:
            reader: StackReader = message[2]
            chunks, times = pending.pop(index)
            _write_video(out_dir, reader, chunks, times, weights, options.annotate)
            summary.written.append(video)
            summary.frames += reader.num_frames
            tracker.video_finished(costs[index], reader.num_frames)
        else:
            pending.pop(index, None)
            summary.failed[video] = message[2]
            where = f" [rank {rank}/{world_size}]" if world_size > 1 else ""
            print(f"tadkit extract{where}: skipped {video}: {message[2]}", file=sys.stderr, flush=True)
            tracker.video_finished(costs[index])
    if cuda:
        torch.cuda.synchronize(device)
    summary.seconds = time.perf_counter() - start
    return summary


@dataclass
class _Batch:
    """What :func:`features_of` reads of an input batch (arrays or pinned tensors)."""

    rgb: Any
    flow: Any
