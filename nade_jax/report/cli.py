"""``nade-report DIR``: the orderings dashboard of a sweep, offline.

    nade-report multirun/2026-11-27/10-00-00 [--out DIR] [--orderings identity,random_s1]

Reads every run dir under DIR (``config.yaml``, ``status.json``, ``metrics.jsonl``,
``profiles.json``, ``samples.png``) as data (``records``: nothing run, no link followed, a
malformed file named in one line and its run re-derived or left out) and writes into
``--out`` (default ``DIR/report``), atomically and never through a link:

* ``report.html``: one self-contained page (images inlined as base64 PNG, no external URL);
* ``report.md`` and the PNGs it links; ``report.json``: the figures' numbers and axis ranges.

The page: test NLL by model x ordering (mean ± sd over seeds, each seed's dot, the independent
and Markov-chain baselines as reference lines, on an axis that spans the baseline), with each
row's gap from the best and its seed-noise interval (95% Welch t); whether each ordering's gap
from the model's best ordering exceeds seed noise; runs that diverged, failed or were
collapsed, with their reason, left out of every axis; each ordering's fixed-order NADE next
to the orderless model evaluated on it, with the orderless ensemble; ensemble NLL vs K; the
cumulative per-position NLL and pixel heat maps for a handful of orderings; sample grids.

This module parses arguments only: ``build.build_report`` makes the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nade_jax.report.build import build_report
from nade_jax.report.files import read_bytes, shown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nade-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a multirun dir (or any dir holding run dirs)")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: ROOT/report)")
    parser.add_argument(
        "--orderings",
        default=None,
        help="comma-separated ordering names for the profiles and heat maps (default: the first 4)",
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"root must be a directory, got {shown(args.root)}")
    chosen = [o for o in args.orderings.split(",") if o] if args.orderings else None
    notes: list[str] = []
    try:
        path = build_report(args.root, args.out or args.root / "report", chosen, notes)
    except ValueError as error:  # ReportError, UnsafePath: one line each
        print(f"nade-report: error: {error}", file=sys.stderr)
        sys.exit(2)
    for note in notes:
        print(f"nade-report: {note}", file=sys.stderr)
    print(read_bytes(path.with_name("report.md")).decode())
    print(f"written to {shown(path)} (self-contained) and {shown(path.with_name('report.md'))}")


if __name__ == "__main__":
    main()
