"""Command-line entry point: ``unlearnbench <subcommand> ...``.

Each subcommand is one ``_cmd_*`` function registered in ``SUBCOMMANDS`` together with a function that declares its
arguments, so subcommands can be added without touching ``main``.  Heavy imports happen inside the subcommand
functions: scoring jobs are started once per job, and start-up time is part of their cost.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

EXIT_USAGE = 2  # argparse's code for bad usage; also used for unreadable or inconsistent inputs


class CliError(Exception):
    """An input problem reported to the user as one line on stderr, with exit code 2 (no traceback)."""


def _add_klom_args(p: argparse.ArgumentParser) -> None:
    from_spec = "(default: %(default)s, as in the published benchmark)"
    p.add_argument("--unlearned", required=True, type=Path, help="[n_models, n_points] margins of unlearned models")
    p.add_argument("--oracle", required=True, type=Path, help="[n_models, n_points] margins of oracle models")
    p.add_argument("--out", required=True, type=Path, help="output .npy: per-point KLOM, float64 [n_points]")
    p.add_argument(
        "--direction",
        choices=("unlearned-oracle", "oracle-unlearned"),  # = klom.DIRECTIONS, kept literal: no numpy import here
        default="unlearned-oracle",
        help="KL(P || Q) with P first: unlearned-oracle is KL(unlearned || oracle) (default: %(default)s)",
    )
    p.add_argument("--bins", type=int, default=20, help=f"histogram bins {from_spec}")
    p.add_argument("--eps", type=float, default=1e-5, help=f"probability floor {from_spec}")
    p.add_argument("--clip", type=float, nargs=2, default=(-100.0, 100.0), metavar=("LOW", "HIGH"),
                   help=f"margins are clipped to [LOW, HIGH] {from_spec}")
    p.add_argument("--inclusive-last-bin", action="store_true",
                   help="close the last bin so values equal to the maximum are counted (default: dropped)")


def _cmd_klom(args: argparse.Namespace) -> int:
    """Per-point KLOM of two margin files, written atomically so a killed job never leaves a partial output."""
    import numpy as np

    from unlearnbench.metrics.klom import klom

    unlearned, oracle = _load_npy(args.unlearned), _load_npy(args.oracle)
    for name, arr in (("unlearned", unlearned), ("oracle", oracle)):
        if arr.ndim != 2:
            raise CliError(f"--{name} {getattr(args, name)}: expected a 2-D [n_models, n_points] array, "
                           f"got shape {arr.shape}")
    if unlearned.shape[1] != oracle.shape[1]:
        raise CliError(f"point counts differ: --unlearned has {unlearned.shape[1]} points, "
                       f"--oracle has {oracle.shape[1]}")
    try:
        result = klom(unlearned, oracle, bins=args.bins, eps=args.eps, clip=tuple(args.clip),
                      direction=args.direction, inclusive_last_bin=args.inclusive_last_bin)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from exc
    try:
        save_npy_atomic(args.out, np.asarray(result, dtype=np.float64))
    except OSError as exc:
        raise CliError(f"--out {args.out}: cannot write ({exc})") from None
    return 0


# name -> (declare its arguments, run it and return the exit code, one-line help)
Subcommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]
SUBCOMMANDS: dict[str, Subcommand] = {
    "klom": (_add_klom_args, _cmd_klom, "per-point KLOM of unlearned vs oracle margins"),
}


def _load_npy(path: Path) -> np.ndarray:
    """Load a .npy without pickles; any failure becomes a one-line CliError naming the file."""
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise CliError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise CliError(f"{path}: expected a .npy array, got {type(array).__name__}")
    return array


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a temp file in the same directory and ``os.replace``.

    Readers (and Snakemake) never see a half-written file.  The temp name ends in ``.npy`` so ``np.save`` writes
    exactly that file instead of appending a suffix; it carries the pid so concurrent writers do not collide, and
    is created with ``open`` so the result gets the usual umask permissions.
    """
    import numpy as np

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(prog="unlearnbench", description="Machine-unlearning benchmark tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_args, func, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit code (2 for bad usage or bad input files)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"unlearnbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
