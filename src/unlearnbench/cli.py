"""Command-line entry point: ``unlearnbench <subcommand> ...``.

Each subcommand is one ``_cmd_*`` function registered in ``SUBCOMMANDS`` together with a function that declares its
arguments, so subcommands can be added without touching ``main``.  Heavy imports happen inside the subcommand
functions: scoring jobs are started once per job, and start-up time is part of their cost.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

EXIT_USAGE = 2  # argparse's code for bad usage; also used for unreadable or inconsistent inputs
# Histogram bins a KLOM call may ask for (the published estimator uses 20; the config schema's klom.bins has the
# same bound). Beyond it a histogram has more bins than any sample has models, and 10**9 bins need gigabytes.
MAX_BINS = 100_000


class CliError(Exception):
    """An input problem reported to the user as one line on stderr, with exit code 2 (no traceback)."""


def _add_klom_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unlearned", required=True, type=Path, help="[n_models, n_points] margins of unlearned models")
    p.add_argument("--oracle", required=True, type=Path, help="[n_models, n_points] margins of oracle models")
    p.add_argument("--out", required=True, type=Path, help="output .npy: per-point KLOM, float64 [n_points]")
    _add_estimator_args(p)


def _add_estimator_args(p: argparse.ArgumentParser) -> None:
    """The KLOM estimator's options, shared by ``klom`` and ``score``."""
    from_spec = "(default: %(default)s, as in the published benchmark)"
    p.add_argument(
        "--direction",
        choices=("unlearned-oracle", "oracle-unlearned"),  # = klom.DIRECTIONS, kept literal: no numpy import here
        default="unlearned-oracle",
        help="KL(P || Q) with P first: unlearned-oracle is KL(unlearned || oracle) (default: %(default)s)",
    )
    p.add_argument("--bins", type=int, default=20, help=f"histogram bins, at most {MAX_BINS} {from_spec}")
    p.add_argument("--eps", type=float, default=1e-5, help=f"probability floor {from_spec}")
    p.add_argument("--clip", type=_clip_pair, default=(-100.0, 100.0), metavar="LOW HIGH",
                   help="margins are clipped to [LOW, HIGH]; also --clip=LOW,HIGH; negative and infinite bounds "
                        f"are fine (--clip -1e3 1e3, --clip -inf 5) {from_spec}")
    p.add_argument("--inclusive-last-bin", action="store_true",
                   help="close the last bin so values equal to the maximum are counted (default: dropped)")
    p.allow_abbrev = False  # --clip is recognised by its full name before parsing (see _clip_arguments)


def _clip_pair(text: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` -> (low, high) with low < high; infinities allowed, NaN not."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW HIGH (or LOW,HIGH), two numbers, got {text!r}") from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"LOW must be below HIGH, got {low} and {high}")
    return low, high


def _clip_arguments(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--clip LOW HIGH`` as ``--clip=LOW,HIGH``.

    argparse takes ``-1e3`` or ``-inf`` after an option for another option (it recognises only plain negative
    numbers such as ``-3``), so ``--clip -1e3 1e3`` would be refused; joined with ``=`` the values are read as
    values. ``--clip=LOW,HIGH`` and ``--clip LOW,HIGH`` pass through unchanged.
    """
    args, out = list(argv), []
    while args:
        arg = args.pop(0)
        if arg == "--clip" and args and "," not in args[0] and len(args) >= 2:
            out.append(f"--clip={args.pop(0)},{args.pop(0)}")
        elif arg == "--clip" and args:
            out.append(f"--clip={args.pop(0)}")
        else:
            out.append(arg)
    return out


def _check_bins(args: argparse.Namespace) -> None:
    if args.bins > MAX_BINS:
        raise CliError(f"--bins {args.bins}: at most {MAX_BINS} bins (each point's histogram holds bins counts; "
                       "the published estimator uses 20)")


def _cmd_klom(args: argparse.Namespace) -> int:
    """Per-point KLOM of two margin files, written atomically so a killed job never leaves a partial output."""
    import numpy as np

    from unlearnbench.metrics.klom import klom

    _check_bins(args)
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


MARGIN_INPUT = ".npy, .npz, .pt, or a folder of per-model files"
TABLE_SUFFIXES = (".csv", ".json", ".parquet")  # what score_table.write_table writes


def _add_score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unlearned", required=True, type=Path,
                   help=f"margins of unlearned models, [models, points], train points then val ({MARGIN_INPUT})")
    p.add_argument("--oracle", required=True, type=Path,
                   help=f"margins of oracle (retrained) models, [models, points] ({MARGIN_INPUT})")
    p.add_argument("--forget", required=True, type=Path, help="forget-set train indices (integer array, e.g. .npy)")
    p.add_argument("--n-train", required=True, type=int, metavar="N",
                   help="train points: the first N columns of the margins; the rest are validation points")
    p.add_argument("--correct-unlearned", type=Path, metavar="CU",
                   help="argmax correctness of the unlearned models, bool or 0/1 [models, points]: adds accuracy")
    p.add_argument("--correct-oracle", type=Path, metavar="CO",
                   help="argmax correctness of the oracle models, bool or 0/1 [models, points]: adds oracle_accuracy")
    _add_estimator_args(p)
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="bootstrap resamples of model draws for the P95 interval p95_low..p95_high (default: none)")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - coverage of the interval (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default: %(default)s)")
    p.add_argument("--epsilon-delta", type=float, default=1e-5, metavar="DELTA",
                   help="δ of the NeurIPS'23 challenge ε (default: %(default)s)")
    p.add_argument("--epsilon-cap", type=float, default=50.0, metavar="CAP",
                   help="cap of the per-point ε (default: %(default)s)")
    p.add_argument("--no-epsilon", action="store_true", help="skip the challenge ε (its cost grows as models²)")
    p.add_argument("--out", type=Path, metavar="TABLE", help="also write the table: .csv, .json or .parquet")


def _cmd_score(args: argparse.Namespace) -> int:
    """KLOM per group, bootstrap interval, accuracy and the challenge ε of margins from any framework."""
    from unlearnbench.margin_files import InputError, load_correct, load_forget, load_margins
    from unlearnbench.score_table import SHOWN_COLUMNS, format_value, render_table, score_table, write_table
    from unlearnbench.scoring import KlomOptions, score_margins

    if args.out is not None and args.out.suffix not in TABLE_SUFFIXES:  # before any work
        raise CliError(f"--out {args.out}: unknown suffix (expected {', '.join(TABLE_SUFFIXES)})")
    if args.bootstrap < 0:
        raise CliError(f"--bootstrap {args.bootstrap}: must be 0 or more")
    _check_bins(args)
    try:
        unlearned, oracle = load_margins(args.unlearned), load_margins(args.oracle)
        if unlearned.shape[1] != oracle.shape[1]:
            raise CliError(f"point counts differ: --unlearned has {unlearned.shape[1]} points, "
                           f"--oracle has {oracle.shape[1]}")
        if not 0 < args.n_train <= unlearned.shape[1]:
            raise CliError(f"--n-train {args.n_train}: must be in [1, {unlearned.shape[1]}], the margins' points")
        forget = load_forget(args.forget, args.n_train)
        correct = {}
        for who, margins in (("unlearned", unlearned), ("oracle", oracle)):
            path = getattr(args, f"correct_{who}")
            if path is not None:
                correct[who] = load_correct(path)
                if correct[who].shape != margins.shape:
                    raise CliError(f"--correct-{who} {path}: shape {correct[who].shape} differs from the "
                                   f"--{who} margins' {margins.shape}")
    except InputError as exc:
        raise CliError(str(exc)) from None
    if not args.no_epsilon and len(unlearned) < 2:
        raise CliError(f"--unlearned {args.unlearned}: the ε forget score needs at least 2 models (or --no-epsilon)")
    options = KlomOptions(bins=args.bins, eps=args.eps, clip=tuple(args.clip), direction=args.direction,
                          inclusive_last_bin=args.inclusive_last_bin)
    epsilon = None if args.no_epsilon else {"delta": args.epsilon_delta, "cap": args.epsilon_cap}
    try:
        scored = score_margins(unlearned, oracle, forget, args.n_train, klom=options, bootstrap=args.bootstrap,
                               alpha=args.alpha, seed=args.seed, epsilon=epsilon,
                               correct_unlearned=correct.get("unlearned"), correct_oracle=correct.get("oracle"))
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from exc
    rows = score_table(scored, len(unlearned), len(oracle), options.direction, set(correct))
    print(f"KLOM({options.direction.replace('-', ' || ')}), {options.bins} bins: {len(unlearned)} unlearned vs "
          f"{len(oracle)} oracle models, {unlearned.shape[1]} points ({args.n_train} train, "
          f"{unlearned.shape[1] - args.n_train} val), forget set of {len(forget)} points")
    print(render_table(rows, [c for c in SHOWN_COLUMNS if c in rows[0]]))
    if scored.epsilon is not None:
        e = scored.epsilon
        final = format_value(e["final_score"]) if correct.keys() == {"unlearned", "oracle"} else \
            "n/a (needs --correct-unlearned and --correct-oracle)"
        print(f"epsilon (NeurIPS'23 challenge, delta {args.epsilon_delta:g}) of the forget points: mean "
              f"{e['epsilon_mean']:.3f}, max {e['epsilon_max']:.3f}; forget score {e['forget_score']:.4f}, "
              f"final score {final}")
    if args.out is not None:
        try:
            write_table(args.out, rows)
        except OSError as exc:
            raise CliError(f"--out {args.out}: cannot write ({exc})") from None
        print(f"wrote {args.out}")
    return 0


def _add_report_args(p: argparse.ArgumentParser) -> None:
    from .layout import REPORT_HTML

    p.add_argument("--out", type=Path, default=Path(REPORT_HTML),
                   help="where the report goes, .html or .zip (default: %(default)s)")
    p.add_argument("--configfile", nargs="+", default=[], metavar="FILE", help="as for snakemake")
    p.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE", help="as for snakemake")
    p.add_argument("--allow-stale", action="store_true",
                   help="build the report although jobs are pending (it then shows stale or missing results)")


def _cmd_report(args: argparse.Namespace) -> int:
    """The HTML report of an up-to-date run, written atomically (see unlearnbench.report_command)."""
    from unlearnbench.report_command import ReportError, build_report, config_args

    try:
        build_report(args.out, config_args(args.configfile, args.config), allow_stale=args.allow_stale)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    print(f"report written to {args.out}")
    return 0


def _add_attribute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--masks", required=True, type=Path,
                   help="[n_models, n_train] bool or 0/1 inclusion masks of the pool models")
    p.add_argument("--outputs", required=True, type=Path, help="[n_models, n_points] outputs (margins) of those models")
    p.add_argument("--forget", required=True, type=Path, help="int64 [k] train indices of the forget set")
    p.add_argument("--out", required=True, type=Path,
                   help="output .npy: float64 [n_points] EFFECT = sum over the forget set of beta_i(x), the predicted "
                        "drop of each point's output when the forget set is removed (oracle ~ base - EFFECT)")
    p.add_argument("--estimator", choices=("auto", "ridge", "ridge_rescaled", "diff_means"),  # datamodels.ESTIMATORS
                   default="auto", help="datamodel estimator (default: %(default)s, chosen by n_models / n_train; "
                                        "see config/README.md)")
    p.add_argument("--l2", type=float, default=1.0, help="ridge penalty of the ridge estimators (default: %(default)s)")


def _cmd_attribute(args: argparse.Namespace) -> int:
    """Forget effect of a pool's datamodels, outside the DAG: validate the three arrays, then one library call."""
    import numpy as np

    from unlearnbench.datamodels import forget_effect_from_pool

    masks, outputs, forget = _load_npy(args.masks), _load_npy(args.outputs), _load_npy(args.forget)
    if masks.ndim != 2:
        raise CliError(f"--masks {args.masks}: expected a 2-D [n_models, n_train] array, got shape {masks.shape}")
    if masks.dtype != np.bool_:
        if not (np.issubdtype(masks.dtype, np.integer) or np.issubdtype(masks.dtype, np.floating)):
            raise CliError(f"--masks {args.masks}: expected bool or 0/1 numbers, got dtype {masks.dtype}")
        if not np.isin(masks, (0, 1)).all():
            raise CliError(f"--masks {args.masks}: values must be 0 or 1")
    if outputs.ndim != 2:
        raise CliError(f"--outputs {args.outputs}: expected a 2-D [n_models, n_points] array, "
                       f"got shape {outputs.shape}")
    if not (np.issubdtype(outputs.dtype, np.floating) or np.issubdtype(outputs.dtype, np.integer)):
        raise CliError(f"--outputs {args.outputs}: expected real numbers, got dtype {outputs.dtype}")
    if outputs.shape[0] != masks.shape[0]:
        raise CliError(f"model counts differ: --masks has {masks.shape[0]} rows, --outputs has {outputs.shape[0]}")
    if not np.isfinite(outputs).all():
        raise CliError(f"--outputs {args.outputs}: contains NaN or infinite values")
    if forget.ndim != 1 or not np.issubdtype(forget.dtype, np.integer):
        raise CliError(f"--forget {args.forget}: expected 1-D integer train indices, got dtype {forget.dtype} "
                       f"shape {forget.shape}")
    if args.l2 <= 0 and args.estimator != "diff_means":
        raise CliError(f"--l2 must be positive, got {args.l2}")
    try:
        effect = forget_effect_from_pool(masks.astype(bool), outputs, forget, args.l2, args.estimator)
    except ValueError as exc:  # indices out of range or repeated, a singular system
        raise CliError(f"--forget {args.forget}: {exc}" if "forget" in str(exc) else str(exc)) from exc
    try:
        save_npy_atomic(args.out, np.asarray(effect, dtype=np.float64))
    except OSError as exc:
        raise CliError(f"--out {args.out}: cannot write ({exc})") from None
    return 0


# name -> (declare its arguments, run it and return the exit code, one-line help)
Subcommand = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]
SUBCOMMANDS: dict[str, Subcommand] = {
    "klom": (_add_klom_args, _cmd_klom, "per-point KLOM of unlearned vs oracle margins"),
    "score": (_add_score_args, _cmd_score, "KLOM, accuracy and ε per group (forget, retain, val) of margins from any "
              "framework"),
    "report": (_add_report_args, _cmd_report, "the HTML report of an up-to-date run, written atomically"),
    "attribute": (_add_attribute_args, _cmd_attribute, "forget effect of a pool's datamodels (DM-direct's shift)"),
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
    """Write ``array`` to ``path`` through :func:`unlearnbench.storage.atomic_path` (temp file, then rename).

    Readers (and Snakemake) never see a half-written file; a temp file left by a killed process has the name the
    workflow's start-up sweep recognises (``storage.sweep_stale_temp_files``).
    """
    import numpy as np

    from unlearnbench.storage import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


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
    args = parser.parse_args(_clip_arguments(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except CliError as exc:
        print(f"unlearnbench {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
