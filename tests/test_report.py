"""nade-report: the orderings dashboard.

Fast tests build a sweep's run dirs by hand (the files the runner writes) and check the page:
mean ± sd, baselines, the collapsed orderless curve, profiles, self-containment, and that a
diverged or failed run is listed with its reason and changes no axis. The slow test runs a
tiny real sweep (2 seeds x 2 orderings x NADE + orderless) through nade-train, nade-report
and nade-eval, and reads the W&B offline run back.
"""

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import preloaded
import pytest
import yaml

from nade_jax.report.build import build_report

D, SHAPE = 16, (4, 4)


def _perm(name):
    if name == "random":
        return np.random.default_rng(0).permutation(D).tolist()
    return {"identity": list(range(D)), "reverse": list(range(D))[::-1]}[name]


def _profile(total, ordering, skew):
    """A (D,) profile in ordering order summing to ``total``."""
    weights = np.linspace(1.0 + skew, 1.0 - skew, D)
    return {"ordering": _perm(ordering), "nll": total, "nll_per_position": (total * weights / weights.sum()).tolist()}


def make_run(
    root,
    name,
    *,
    model,
    ordering,
    seed,
    test_nll,
    status="finished",
    reason=None,
    orderless=False,
    write_status=True,
    finished=True,
    extra=(),
    ordering_seed=0,
):
    run = Path(root) / name
    (run / ".hydra").mkdir(parents=True)
    config = {
        "model": {"_target_": "nade_jax.models." + ("OrderlessNADE" if orderless else "BinaryNADE")},
        "data": {"name": "toy"},
        "ordering": {"kind": ordering, "seed": ordering_seed},
        "seed": seed,
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": model}}}}))
    (run / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"model={model}", f"ordering={ordering}", f"seed={seed}", *extra])
    )
    rows = [{"step": 100, "train/loss": test_nll + 1}, {"step": 200, "val/nll": test_nll + 0.2}]
    if finished:
        rows.append({"step": 200, "test/nll": test_nll, "test/baseline_nll": 12.0})
        profiles = {ordering: _profile(test_nll, ordering, 0.5)}
        if orderless:
            per = [test_nll, test_nll + 0.3, test_nll + 0.5, test_nll + 0.4]
            rows.append(
                {
                    "step": 200,
                    "test/ordering_names": ["identity", "reverse", "eval_random_0", "eval_random_1"],
                    "test/nll_per_ordering": per,
                    "test/ensemble_curve_k": [1, 2, 4],
                    "test/ensemble_curve_nll": [per[0], test_nll - 0.2, test_nll - 0.35],
                }
            )
            rows.append(
                {"step": 200, "test/ensemble_nll": test_nll - 0.35, "test/mean_ordering_nll": float(np.mean(per))}
            )
            profiles = {o: _profile(test_nll + 0.3 * (o == "reverse"), o, -0.3) for o in ("identity", "reverse")}
        (run / "profiles.json").write_text(
            json.dumps({"step": 200, "train_ordering": ordering, "image_shape": list(SHAPE), "orderings": profiles})
        )
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if write_status:
        (run / "status.json").write_text(json.dumps({"status": status, "reason": reason}))
    return run


def toy_sweep(root):
    job = 0
    for seed in (0, 1):
        for ordering, nll in (("identity", 8.0), ("reverse", 8.6)):
            make_run(
                root,
                f"{job}_nade_{ordering}_{seed}",
                model="nade",
                ordering=ordering,
                seed=seed,
                test_nll=nll + 0.1 * seed,
            )
            job += 1
        make_run(
            root,
            f"{job}_orderless_{seed}",
            model="orderless_nade",
            ordering="identity",
            seed=seed,
            test_nll=8.3 + 0.1 * seed,
            orderless=True,
        )
        job += 1
    return job


def test_page_shows_mean_sd_baseline_collapsed_curve_and_profiles_and_is_self_contained(tmp_path):
    toy_sweep(tmp_path / "sweep")
    page = build_report(tmp_path / "sweep", tmp_path / "out")
    text = page.read_text()
    summary = json.loads((tmp_path / "out" / "report.json").read_text())["data"]["toy"]
    rows = {r["label"]: r for r in summary["rows"]}
    assert rows["nade · identity"]["values"] == pytest.approx([8.0, 8.1])
    assert rows["nade · identity"]["mean"] == pytest.approx(8.05)
    assert rows["nade · identity"]["sd"] == pytest.approx(np.std([8.0, 8.1], ddof=1))
    assert "8.050 ± 0.071" in text
    assert "independent baseline (reference)" in text
    assert summary["references"]["independent baseline"] == 12.0
    # The axis spans the baseline (no exaggerated gaps) and every mean.
    low, high = summary["test_nll_axis"]
    assert low < 8.0
    assert high > 12.0
    # The orderless model: evaluated on the NADEs' orderings, one ensemble curve with 2 seeds.
    comparison = summary["comparison"]
    assert comparison["orderings"] == ["identity", "reverse"]
    assert comparison["series"]["orderless_nade evaluated on o"]["reverse"] == pytest.approx([8.6, 8.7])
    assert list(summary["ensemble_curves"]) == ["orderless_nade"]
    assert len(summary["ensemble_curves"]["orderless_nade"]["per_seed"]) == 2
    assert set(summary["profiles"]) == {
        "nade · identity",
        "nade · reverse",
        "orderless_nade · identity",
        "orderless_nade · reverse",
    }
    assert np.sum(summary["profiles"]["nade · reverse"]) == pytest.approx(8.65)
    for title in (
        "Per-position NLL along the ordering",
        "Pixel heat maps",
        "Ensemble NLL vs number of orderings K",
        "Orderless vs fixed order, on the same orderings",
    ):
        assert title in text
    # Self-contained: every image inline, no URL anywhere.
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) >= 5
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    assert not re.search(r"(https?:|//[a-z0-9.-]+\.[a-z]{2,}/|<link|<script)", text, re.IGNORECASE)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| nade · identity | 8.050 ± 0.071 | 2 |" in md


def test_diverged_and_failed_runs_are_listed_with_reasons_and_change_no_axis(tmp_path):
    jobs = toy_sweep(tmp_path / "clean")
    build_report(tmp_path / "clean", tmp_path / "out_clean")
    toy_sweep(tmp_path / "dirty")
    make_run(
        tmp_path / "dirty",
        f"{jobs}_nade_identity_9",
        model="nade",
        ordering="identity",
        seed=9,
        test_nll=1e7,
        status="diverged",
        reason="validation NLL 1e+07 rose more than 100 x |baseline|",
    )
    make_run(
        tmp_path / "dirty",
        f"{jobs + 1}_nade_reverse_9",
        model="nade",
        ordering="reverse",
        seed=9,
        test_nll=float("nan"),
        write_status=False,
        finished=False,
    )  # killed, no status.json
    (tmp_path / "dirty" / f"{jobs + 2}_collapsed").mkdir()
    (tmp_path / "dirty" / f"{jobs + 2}_collapsed" / "status.json").write_text(
        json.dumps({"status": "skipped", "reason": "collapsed: orderless_nade is trained over all orderings"})
    )
    page = build_report(tmp_path / "dirty", tmp_path / "out_dirty")
    clean = json.loads((tmp_path / "out_clean" / "report.json").read_text())
    dirty = json.loads((tmp_path / "out_dirty" / "report.json").read_text())
    for key in ("test_nll_axis", "rows", "references"):
        assert dirty["data"]["toy"][key] == clean["data"]["toy"][key]
    assert dirty["data"]["toy"]["comparison"]["axis"] == clean["data"]["toy"]["comparison"]["axis"]
    excluded = {Path(e["dir"]).name: e for e in dirty["excluded"]}
    assert excluded[f"{jobs}_nade_identity_9"]["status"] == "diverged"
    assert "no status.json" in excluded[f"{jobs + 1}_nade_reverse_9"]["reason"]
    assert excluded[f"{jobs + 2}_collapsed"]["status"] == "skipped"
    text = page.read_text()
    assert "rose more than 100 x |baseline|" in text
    assert "Runs left out of the figures" in text


def test_no_finished_run_is_one_line(tmp_path, capsys):
    from nade_jax.report.cli import main

    make_run(
        tmp_path,
        "0_x",
        model="nade",
        ordering="identity",
        seed=0,
        test_nll=1.0,
        status="failed",
        reason="boom",
        finished=False,
    )
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nade-report: error:")
    assert "\n" not in err


# ---------------------------------------------------------------------------------------
TINY = [
    "trainer.max_steps=40",
    "trainer.eval_every=20",
    "trainer.checkpoint_every=20",
    "trainer.log_every=10",
    "trainer.num_samples=8",
    "trainer.num_eval_orderings=4",
    "trainer.samples_every_evals=1",
    "trainer.progress=false",
    "model.hidden=[16,16]",
    "model.num_hidden=16",
]


def _run(module, args, cwd, timeout=900):
    """``python -m module *args``, forked from the preloaded apps (tests/preloaded.py)."""
    result = preloaded.run_module(module, args, cwd, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _wandb_records(run_dir: Path) -> list[dict]:
    """Every history/summary item W&B wrote for a run, read back from its offline
    ``.wandb`` files (``wandb leet inspect --json``)."""
    records = []
    for attempt in sorted((run_dir / "wandb").glob("offline-run-*")):
        inspect = subprocess.run(
            [str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(attempt)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert inspect.returncode == 0, inspect.stderr[-2000:]
        records.append(inspect.stdout)
    return records


@pytest.mark.slow
def test_tiny_real_sweep_report_and_wandb(tmp_path):
    sweep = tmp_path / "sweep"
    models = "model=nade,orderless_nade"
    # model.hidden / model.num_hidden exist in only one model config each: set them per model.
    _run(
        "nade_jax.run.app",
        [
            "-m",
            models,
            "ordering=identity,reverse",
            "seed=0,1",
            *[t for t in TINY if not t.startswith("model.")],
            "trainer.eval_orderings=[{kind:identity,seed:0},{kind:reverse,seed:0}]",
            f"hydra.sweep.dir={sweep}",
            "hydra.sweep.subdir=${hydra.job.num}_${hydra.job.override_dirname}",
        ],
        cwd=tmp_path,
    )
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/status.json")}
    assert sorted(statuses.values()) == ["finished"] * 6 + ["skipped"] * 2, statuses
    orderless = [sweep / n for n, s in statuses.items() if "orderless" in n and s == "finished"]
    profiles = json.loads((orderless[0] / "profiles.json").read_text())
    assert set(profiles["orderings"]) == {"identity", "reverse"}  # the NADEs' orderings (and the labelled pair)
    assert len(profiles["orderings"]["reverse"]["nll_per_position"]) == 64
    metrics = {
        k: v for line in (orderless[0] / "metrics.jsonl").read_text().splitlines() for k, v in json.loads(line).items()
    }
    assert sum(profiles["orderings"]["reverse"]["nll_per_position"]) == pytest.approx(
        metrics["test/reverse_nll"], rel=1e-6
    )
    assert list((orderless[0] / "samples").glob("step_*.png"))

    _run("nade_jax.report.cli", [str(sweep)], cwd=tmp_path)
    text = (sweep / "report" / "report.html").read_text()
    summary = json.loads((sweep / "report" / "report.json").read_text())["data"]["digits"]
    assert "±" in text
    assert "independent baseline" in text
    assert "Per-position NLL along the ordering" in text
    assert [len(c["per_seed"]) for c in summary["ensemble_curves"].values()] == [2]
    assert set(summary["comparison"]["orderings"]) == {"identity", "reverse"}
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', text))
    assert not re.search(r"https?:", text)
    assert text.count("collapsed: orderless_nade is trained over all orderings") == 2

    # nade-eval logs into the W&B run it evaluates (offline: a second attempt with the same id).
    _run("nade_jax.run.eval_app", [f"run_dir='{orderless[0]}'", "num_orderings=4", "num_samples=0"], cwd=tmp_path)
    attempts = sorted((orderless[0] / "wandb").glob("offline-run-*"))
    assert len(attempts) == 2
    assert len({a.name.rsplit("-", 1)[-1] for a in attempts}) == 1
    train_dump, eval_dump = _wandb_records(orderless[0])
    for key in (
        "test/nll_by_ordering",
        "test/profile",
        "test/heat_map",
        "train/samples",
        "samples",
        "test/per_ordering",
    ):
        assert key in train_dump, key
    for key in ("eval_K4/ensemble_nll", "eval_K4/profile", "eval_K4/nll_by_ordering", "eval_K4/heat_map"):
        assert key in eval_dump, key


def test_models_differing_in_a_swept_setting_are_distinct_and_seeds_are_not(tmp_path):
    for seed in (0, 1):
        for hidden, nll in ((50, 9.0), (100, 8.0)):
            make_run(
                tmp_path / "sweep",
                f"{seed}_{hidden}",
                model="nade",
                ordering="identity",
                seed=seed,
                test_nll=nll + 0.1 * seed,
                extra=[f"model.num_hidden={hidden}", "trainer.max_steps=40"],
            )
    build_report(tmp_path / "sweep", tmp_path / "out")
    rows = json.loads((tmp_path / "out" / "report.json").read_text())["data"]["toy"]["rows"]
    assert [(r["label"], len(r["values"])) for r in rows] == [
        ("nade [model.num_hidden=100] · identity", 2),
        ("nade [model.num_hidden=50] · identity", 2),
    ]


def test_random_orderings_drawn_per_seed_are_one_row_with_a_seed_noise_interval(tmp_path):
    """rgb_compare_orderings draws the random ordering afresh per seed (random_s0, random_s1,
    random_s2): the dashboard groups them as one class with n = 3, its gap from the best
    ordering gets a Welch interval, and the findings say whether it exceeds seed noise. A
    random ordering shared by all seeds keeps its label."""
    from nade_jax.report import aggregate, records

    for seed, (raster, random) in enumerate(((8.0, 8.5), (8.1, 8.7), (8.05, 8.6))):
        make_run(tmp_path / "per_seed", f"{2 * seed}_id", model="nade", ordering="identity", seed=seed, test_nll=raster)
        make_run(
            tmp_path / "per_seed",
            f"{2 * seed + 1}_random",
            model="nade",
            ordering="random",
            seed=seed,
            ordering_seed=seed,
            test_nll=random,
        )
        make_run(
            tmp_path / "shared",
            f"{seed}_random",
            model="nade",
            ordering="random",
            seed=seed,
            ordering_seed=1,
            test_nll=9,
        )
    rows = aggregate.nll_rows(records.read_sweep(tmp_path / "per_seed").runs)
    assert [(r["ordering"], len(r["values"])) for r in rows] == [("identity", 3), (aggregate.RANDOM_PER_SEED, 3)]
    ((model, gap),) = aggregate.ordering_gaps(rows)
    assert (model, gap.best, gap.difference) == ("nade", "nade · identity", pytest.approx(0.55))
    assert gap.exceeds_noise is True  # 0.55 nats against a seed sd of 0.05-0.1
    assert aggregate.RANDOM_PER_SEED in " ".join(aggregate.findings(rows, {}, [], {}))

    shared = aggregate.nll_rows(records.read_sweep(tmp_path / "shared").runs)
    assert [(r["ordering"], len(r["values"])) for r in shared] == [("random_s1", 3)]
