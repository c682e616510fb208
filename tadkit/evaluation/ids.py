"""Matching prediction / blocked-list video ids onto ground-truth ids.

Datasets spell the same video differently: BSN-style ActivityNet files use ``v_<youtube id>``,
the official ActivityNet files and the blocked list use the bare YouTube id, THUMOS detection files
sometimes carry the ``.mp4`` extension (the evalkit strips it). The rule, applied in this order:

1. the id itself, if it is a ground-truth id;
2. the id without a video-file extension (``.mp4``, ``.mpeg``, ...);
3. ``"v_" + id``;
4. the id without its leading ``"v_"``.

The first form that names a ground-truth video wins; an id that matches none stays unknown.
Exact matches always win, so a YouTube id that really starts with ``v_`` is never rewritten when
it exists as such.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from tadkit.errors import TadkitError

VIDEO_EXTENSIONS = (".mp4", ".mpeg", ".mpg", ".avi", ".mkv", ".webm", ".mov", ".m4v")


def id_forms(video_id: str) -> list[str]:
    """The spellings tried for ``video_id``, in rule order (duplicates removed)."""
    forms = [video_id]
    base = video_id
    lower = video_id.lower()
    for ext in VIDEO_EXTENSIONS:
        if lower.endswith(ext):
            base = video_id[: -len(ext)]
            forms.append(base)
            break
    forms.append("v_" + base)
    if base.startswith("v_"):
        forms.append(base[2:])
    return list(dict.fromkeys(forms))


class VideoIdResolver:
    """Resolves foreign spellings of video ids onto a fixed set of ground-truth ids."""

    def __init__(self, gt_ids: Iterable[str]) -> None:
        self._ids = set(gt_ids)
        self._cache: dict[str, str | None] = {}

    def resolve(self, video_id: str) -> str | None:
        """The ground-truth id ``video_id`` stands for, or None."""
        if video_id in self._ids:
            return video_id
        hit = self._cache.get(video_id, "")
        if hit != "":
            return hit
        found = next((form for form in id_forms(video_id) if form in self._ids), None)
        self._cache[video_id] = found
        return found


def is_blocked(video_id: str, blocked: set[str]) -> bool:
    """True when any spelling of ``video_id`` (see :func:`id_forms`) is in ``blocked``."""
    return any(form in blocked for form in id_forms(video_id))


def load_blocked(source: str | os.PathLike | Iterable[str] | None) -> set[str]:
    """Blocked video ids from a JSON list file, or from an iterable of ids; None -> empty set.

    The file format is the one the official ActivityNet API served: a JSON list of YouTube ids.
    A ``{"blocked": [...]}`` object is accepted too.
    """
    if source is None:
        return set()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TadkitError("blocked-video list not found", file=str(path)) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise TadkitError(f"blocked-video list is not valid JSON ({error})", file=str(path)) from None
        except OSError as error:
            raise TadkitError(f"cannot read blocked-video list ({error.strerror})", file=str(path)) from None
        if isinstance(data, dict) and isinstance(data.get("blocked"), list):
            data = data["blocked"]
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise TadkitError("blocked-video list must be a JSON list of video id strings", file=str(path))
        return set(data)
    ids = list(source)
    if not all(isinstance(v, str) for v in ids):
        raise TadkitError("blocked video ids must be strings", field="blocked")
    return set(ids)
