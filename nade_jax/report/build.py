"""The report of a sweep: records (``records.read_sweep``) -> numbers (``aggregate``) -> PNGs
(``plots``) -> one ``render.Document`` -> ``report.html``, ``report.md`` and ``report.json``.

Everything is written into the output dir atomically and never through a link (``files``);
``report.json`` holds every plotted number and axis range, and the notes on files that could
not be read.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from nade_jax.report import aggregate, plots
from nade_jax.report.files import UnsafePath, prepare_output_dir, read_bytes, shown, write_atomic
from nade_jax.report.records import STEP, Run, Sweep, read_sweep
from nade_jax.report.render import (
    Block,
    Bullets,
    Document,
    Figure,
    Gallery,
    Section,
    Table,
    figure_from_file,
    to_html,
    to_markdown,
)
from nade_jax.run.rundir import SAMPLES_FILE, TRAIN_STEPS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ReportError(ValueError):
    """No report can be made (no run dir, no finished run); the message is one line."""


def _fmt(value: object) -> str:
    return aggregate.fmt(value, 3)


def build_report(
    root: Path, out: Path, chosen_orderings: list[str] | None = None, notes: list[str] | None = None
) -> Path:
    """Writes report.html, report.md, report.json and the PNGs for the runs under ``root``
    into ``out``; returns the HTML page's path and appends to ``notes`` one line per file that
    could not be read as it should. Raises ``ReportError`` when no run finished and
    ``files.UnsafePath`` when ``out`` or a file in it is a link (both one line)."""
    sweep = read_sweep(root, exclude=out)
    runs = sweep.runs
    if not runs:
        raise ReportError(f"no run dirs (config.yaml, status.json or metrics.jsonl) under {shown(root)}")
    usable = [r for r in runs if r.usable]
    if not usable:
        raise ReportError(
            f"none of the {len(runs)} runs under {shown(root)} finished with a finite test NLL; see their status.json"
        )
    profiled = sorted({name for r in usable if r.profiles for name in r.profiles["orderings"]})
    unknown = [o for o in chosen_orderings or [] if o not in profiled]
    if unknown:
        choices = ", ".join(profiled[:12]) + (f" (and {len(profiled) - 12} more)" if len(profiled) > 12 else "")
        raise ReportError(f"--orderings: {shown(unknown[0])!r} has no profile in this sweep; choose from {choices}")
    out = prepare_output_dir(Path(out))
    problems = [r for r in runs if not r.usable]
    summary: dict[str, Any] = {"root": str(sweep.root), "runs": len(runs), "usable": len(usable), "data": {}}
    sections = [
        _data_section(data, [r for r in usable if r.data == data], out, chosen_orderings, summary, sweep.notes)
        for data in dict.fromkeys(r.data for r in usable)
    ]
    sections += _run_sections(sweep, usable, problems)
    summary["excluded"] = [{"dir": str(r.dir), "status": r.status, "reason": r.reason} for r in problems]
    summary["notes"] = sweep.notes
    document = Document(
        "Orderings report",
        shown(root),
        f"{len(runs)} run dirs: {len(usable)} finished and plotted, {len(problems)} left out"
        f"{' (listed at the end)' if problems else ''}. Test NLL in nats per example, lower is better.",
        sections,
    )
    if notes is not None:
        notes.extend(sweep.notes)
    write_atomic(out / "report.json", json.dumps(summary, indent=2, default=float).encode())
    write_atomic(out / "report.md", to_markdown(document).encode())
    return write_atomic(out / "report.html", to_html(document).encode())


def _run_sections(sweep: Sweep, usable: list[Run], problems: list[Run]) -> list[Section]:
    def name(run: Run) -> str:
        return shown(run.dir.relative_to(sweep.root)) if run.dir != sweep.root else run.dir.name

    sections = [
        Section(
            "Runs plotted",
            [
                Table(
                    ["run", "model", "data", "ordering", "seed", "test NLL"],
                    [[name(r), r.model, r.data, r.ordering, str(r.seed), _fmt(r.test_nll)] for r in usable],
                    numeric=frozenset({4, 5}),
                )
            ],
        )
    ]
    if problems:
        sections.append(
            Section(
                "Runs left out of the figures",
                [
                    Table(
                        ["run", "status", "reason"],
                        [[name(r), r.status, r.reason or ""] for r in problems],
                        row_styles=["skipped" if r.status == "skipped" else "bad" for r in problems],
                    )
                ],
            )
        )
    if sweep.notes:
        sections.append(Section("Files that could not be read as they should", [Bullets(sweep.notes)]))
    return sections


def _data_section(
    data: str,
    runs: list[Run],
    out: Path,
    chosen: list[str] | None,
    summary: dict[str, Any],
    notes: list[str],
) -> Section:
    """The findings, table and figures of one data set's runs."""
    tag = "".join(c if c.isalnum() else "_" for c in data)[:80]  # a file name, whatever a run dir calls its data
    refs = aggregate.references(runs)
    rows = aggregate.nll_rows(runs)
    gaps = aggregate.gaps_from_best(rows)
    numbers: dict[str, Any] = {"rows": rows, "references": refs}
    summary["data"][data] = numbers
    axis = plots.save_nll_dots(
        rows,
        refs,
        out / f"{tag}_test_nll.png",
        f"{data}: test NLL by model and ordering (mean ± sd over seeds; dots: seeds)",
        gap_half_widths=[g.half_width for g in gaps],
    )
    numbers["test_nll_axis"] = list(axis)
    ordering_gaps = aggregate.ordering_gaps(rows)
    numbers["ordering_gaps"] = [
        {"model": model, **dataclasses.asdict(gap), "exceeds_noise": gap.exceeds_noise} for model, gap in ordering_gaps
    ]
    figures: list[Figure] = [
        figure_from_file(
            "Test NLL by model × ordering",
            "Diamond: mean over seeds; small dots: each seed. Left, to scale, bars ± sd: the axis spans the "
            "independent (per-pixel) baseline (dashed) and the best Markov chain (dotted, where the sweep has "
            "one), so gaps are seen against what the models gain. Right: the same points in nats above the "
            f"best row, with bars the {aggregate.CONFIDENCE:.0%} Welch t interval on each row's gap from the "
            "best row over seeds: a bar that reaches 0 is within seed noise.",
            out / f"{tag}_test_nll.png",
        )
    ]
    orderings, series, ensembles = aggregate.comparison(runs)
    if any(n.endswith("evaluated on o") for n in series) and any(n.endswith("trained on o") for n in series):
        # Zoomed on the models (the headline figure shows them against the baselines).
        cmp_axis = plots.save_fixed_vs_orderless(
            orderings,
            series,
            ensembles,
            out / f"{tag}_orderless_vs_fixed.png",
            f"{data}: a NADE trained on each ordering vs the orderless model evaluated on it",
        )
        numbers["comparison"] = {
            "orderings": orderings,
            "series": series,
            "ensembles": ensembles,
            "axis": list(cmp_axis),
        }
        figures.append(
            figure_from_file(
                "Orderless vs fixed order, on the same orderings",
                "For each ordering o: the NADE trained on o, and the one orderless model per seed evaluated "
                "(exactly) on o, mean ± sd over seeds with each seed's dot; horizontal line: the orderless "
                "K-ordering ensemble. The axis spans these values only (the figure above shows them against "
                "the baselines).",
                out / f"{tag}_orderless_vs_fixed.png",
            )
        )
    curves = aggregate.ensemble_curves(runs)
    if curves:
        plots.save_ensemble_curves(
            curves,
            out / f"{tag}_ensembles.png",
            f"{data}: ensembles over orderings",
            {k: v for k, v in refs.items() if k != "independent baseline"},
        )
        numbers["ensemble_curves"] = {m: {"k": ks, "per_seed": c} for m, (ks, c) in curves.items()}
        figures.append(
            figure_from_file(
                "Ensemble NLL vs number of orderings K",
                "One line per distinct model (runs of one model and seed collapse into one curve), mean over "
                "seeds, band from the lowest to the highest seed.",
                out / f"{tag}_ensembles.png",
            )
        )
    figures += _profile_figures(data, tag, runs, out, chosen or orderings[:4], numbers)
    table = Table(
        ["model · ordering", "test NLL mean ± sd", "seeds", "per seed", "gap from the model's best ordering"],
        [],
        numeric=frozenset({1, 2, 3}),
        row_styles=[],
    )
    by_label = {g.label: g for _, g in ordering_gaps}
    for row in rows:
        gap = by_label.get(row["label"])
        table.rows.append(
            [
                row["label"],
                f"{_fmt(row['mean'])} ± {_fmt(row['sd'])}",
                str(len(row["values"])),
                ", ".join(_fmt(v) for v in row["values"]),
                _gap_cell(gap),
            ]
        )
        (table.row_styles or []).append("")
    for name, value in refs.items():
        table.rows.append([f"{name} (reference)", _fmt(value), "", "", ""])
        (table.row_styles or []).append("ref")
    findings = aggregate.findings(rows, series, orderings, refs)
    samples = _sample_grids(runs, notes)
    blocks: list[Block] = [Bullets(findings), table, *figures]
    if samples:
        blocks.append(Gallery("Samples", samples))
    return Section(data, blocks)


def _gap_cell(gap: aggregate.Gap | None) -> str:
    if gap is None:
        return ""
    if gap.half_width is None:
        return f"+{_fmt(gap.difference)} (one seed: no interval)"
    verdict = "exceeds seed noise" if gap.exceeds_noise else "within seed noise"
    return f"+{_fmt(gap.difference)} ± {_fmt(gap.half_width)}: {verdict}"


def _profile_figures(
    data: str, tag: str, runs: list[Run], out: Path, chosen: list[str], numbers: dict[str, Any]
) -> list[Figure]:
    """The per-position profiles and, for image data, the pixel heat maps."""
    profiles, perms, image_shape = aggregate.mean_profiles(runs, chosen)
    if not profiles:
        return []
    title = f"{data}: where along the ordering the likelihood is lost (mean over seeds)"
    plots.save_profiles(profiles, out / f"{tag}_profiles.png", title)
    numbers["profiles"] = {k: v.tolist() for k, v in profiles.items()}
    figures = [
        figure_from_file(
            "Per-position NLL along the ordering",
            "Left: cumulative test NLL of the first d conditionals (it ends at the test NLL); right: the NLL of "
            "the d-th conditional. Solid: NADE trained on the ordering; dashed: the orderless model evaluated on it.",
            out / f"{tag}_profiles.png",
        )
    ]
    if image_shape is None or len(image_shape) not in (2, 3):
        return figures
    # One row per model, one column per ordering.
    shown_orderings = [o for o in chosen if o in perms]
    labels = sorted(
        profiles,
        key=lambda k: ("orderless" in k, k.rsplit(" · ", 1)[0], shown_orderings.index(k.rsplit(" · ", 1)[1])),
    )
    by_pixel = aggregate.pixel_heat_maps({label: profiles[label] for label in labels}, perms)
    maps = {label.replace(" · ", "\n"): by_pixel[label] for label in labels}
    plots.save_heat_maps(
        maps,
        tuple(image_shape),
        out / f"{tag}_heat_maps.png",
        f"{data}: NLL of each pixel when it is predicted (mean over seeds)",
        columns=len(shown_orderings) if len(shown_orderings) > 1 else min(len(maps), 4),
    )
    figures.append(
        figure_from_file(
            "Pixel heat maps",
            "The test NLL of each pixel when it is predicted under the ordering (one row per model, one column per "
            "ordering, one colour scale; colour images: one panel per channel); each map sums to that model's test NLL "
            "under that ordering.",
            out / f"{tag}_heat_maps.png",
        )
    )
    return figures


def _sample_grids(runs: list[Run], notes: list[str]) -> list[Figure]:
    """One titled sample grid per (model, ordering): the lowest seed's ``samples.png``, read
    without following a link and only if it is a PNG."""
    grids: dict[tuple[str, str], Figure] = {}
    for run in sorted(runs, key=lambda r: (r.seed is None, r.seed)):
        key = (run.model, run.ordering)
        if key in grids:
            continue
        try:
            png = read_bytes(run.dir / SAMPLES_FILE)
        except FileNotFoundError:
            continue
        except UnsafePath as error:
            notes.append(f"{shown(run.dir.name)}/{SAMPLES_FILE}: {error.why}")
            continue
        except OSError as error:
            notes.append(f"{shown(run.dir.name)}/{SAMPLES_FILE}: unreadable ({error.strerror}); ignored")
            continue
        if not png.startswith(PNG_MAGIC):
            notes.append(f"{shown(run.dir.name)}/{SAMPLES_FILE}: not a PNG; ignored")
            continue
        steps = run.number(TRAIN_STEPS) or run.number(STEP)
        grids[key] = Figure(
            f"{run.model} · {run.ordering}",
            f"{run.model} · {run.ordering}{' (sampling)' if run.orderless else ''} · seed {run.seed} · "
            f"best parameters (ran to step {int(steps) if steps is not None else '?'})",
            png,
        )
    return list(grids.values())
