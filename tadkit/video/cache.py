"""A per-user cache of extracted features, so `tadkit detect` on the same video does not extract twice.

Key = SHA-256 over: the video's content fingerprint (size, mtime, first and last MiB), the extraction
settings (stack, step, requested fps, streams, resize/crop) and the I3D weights' fingerprint (a hash of
the loaded models' tensors, so other weights never reuse features). Entries live in
``$TADKIT_FEATURE_CACHE`` or ``$TADKIT_CACHE/features`` (default ``~/.cache/tadkit/features``) as
``<video id>-<key prefix>.npy`` + ``.json`` (the `tadkit extract` sidecar). An unreadable or inconsistent
entry is extracted again and overwritten; delete the directory to free the space.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tadkit.video.extract import STREAMS, ExtractSettings, feature_dim
from tadkit.video.weights import cache_dir

CHUNK = 1 << 20  # the first and last MiB of the video enter the key
KEY_VERSION = "tadkit-feature-cache/1"


def feature_cache_dir() -> Path:
    env = os.environ.get("TADKIT_FEATURE_CACHE")
    return Path(env).expanduser() if env else cache_dir() / "features"


def video_fingerprint(path: str | Path) -> str:
    """Hash of size, mtime (ns) and the first and last MiB: cheap, and changes when the file does."""
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(CHUNK))
        if stat.st_size > CHUNK:
            handle.seek(max(CHUNK, stat.st_size - CHUNK))
            digest.update(handle.read(CHUNK))
    return digest.hexdigest()


def model_fingerprint(model: torch.nn.Module | None) -> str:
    """Hash of every tensor of ``model`` (names, shapes, bytes); "none" for no model."""
    if model is None:
        return "none"
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(video: str | Path, settings: ExtractSettings, rgb: torch.nn.Module | None,
              flow: torch.nn.Module | None) -> str:
    parts = {
        "version": KEY_VERSION,
        "video": video_fingerprint(video),
        "stack": settings.stack,
        "step": settings.step,
        "fps": settings.fps,
        "streams": settings.streams,
        "short_side": settings.short_side,
        "crop": settings.crop,
        "flow_bound": settings.flow_bound if "flow" in STREAMS[settings.streams] else None,
        **({} if settings.frame_size is None else {"frame_size": list(settings.frame_size), "squeeze": settings.squeeze}),
        "rgb": model_fingerprint(rgb) if "rgb" in STREAMS[settings.streams] else None,
        "flow": model_fingerprint(flow) if "flow" in STREAMS[settings.streams] else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _read_entry(npy: Path, meta_path: Path, settings: ExtractSettings, key: str) -> tuple[np.ndarray, dict] | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        features = np.load(npy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    ok = (isinstance(meta, dict) and meta.get("cache_key") == key and features.ndim == 2
          and features.dtype == np.float32 and features.shape[1] == feature_dim(settings.streams)
          and len(meta.get("timestamps", ())) == features.shape[0])
    if not ok:
        return None
    from tadkit.data.features import first_non_finite

    bad = first_non_finite(features)
    if bad is not None:  # a damaged entry (extraction of a decodable video gives finite features)
        print(f"note: cached features {npy} hold a non-finite value (feature {bad[0]}, column {bad[1]}); "
              "extracting again", file=sys.stderr)
        return None
    return features, meta


def cached_extract(
    path: str | Path,
    model: torch.nn.Module | None,
    *,
    flow_model: torch.nn.Module | None = None,
    fps: float | None = None,
    stack: int = 16,
    step: int = 16,
    streams: str = "rgb",
    progress: bool = False,
    use_cache: bool = True,
    directory: Path | None = None,
) -> tuple[np.ndarray, dict[str, Any], bool]:
    """:func:`tadkit.video.extract.extract_video` through the cache: (features, metadata, cache hit?).

    A failed write (full disk, read-only home) only loses the cache, never the result.
    """
    from tadkit.video import extract as extract_module  # looked up per call: tests count the calls

    settings = ExtractSettings(fps=fps, stack=stack, step=step, streams=streams)
    settings.validate()
    path = Path(path)
    key = cache_key(path, settings, model, flow_model) if use_cache else ""
    folder = feature_cache_dir() if directory is None else Path(directory)
    npy = folder / f"{path.stem}-{key[:24]}.npy"
    meta_path = npy.with_suffix(".json")
    if use_cache and npy.is_file() and meta_path.is_file():
        entry = _read_entry(npy, meta_path, settings, key)
        if entry is not None:
            features, meta = entry
            meta.update(video=str(path), video_id=path.stem)  # same content, maybe another name
            return features, meta, True
    features, meta = extract_module.extract_video(path, model, flow_model=flow_model, fps=fps, stack=stack,
                                                  step=step, streams=streams, progress=progress)
    if use_cache:
        from tadkit.utils.io import numpy_save, write_json

        try:
            folder.mkdir(parents=True, exist_ok=True)
            numpy_save(npy, features)
            write_json(meta_path, {**meta, "cache_key": key})
        except Exception as error:  # noqa: BLE001 - the cache is an optimisation; the features are still returned
            print(f"note: features not cached in {folder}: {error}", file=sys.stderr)
    return features, meta, False


__all__ = ["cache_key", "cached_extract", "feature_cache_dir", "model_fingerprint", "video_fingerprint"]
