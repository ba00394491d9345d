"""nade-report on run dirs from someone else: malformed files, planted links, relative paths,
job records pointing outside the sweep, interpolations; and the seed-noise interval.

All in-process on hand-made run dirs (``test_report.make_run``): no training, about a second each.
"""

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_report import make_run, toy_sweep

from nade_jax.report import aggregate
from nade_jax.report.build import build_report
from nade_jax.report.cli import main

SECRET = "s3cr3t-value-7f1c"  # planted in bad files: must never reach a message or the report
RUNS = 6  # toy_sweep: 2 seeds x (nade identity, nade reverse, orderless)
BAD = "0_nade_identity_0"  # the run whose file is corrupted; its row is nade · identity


def _outputs(out: Path, stderr: str = "") -> str:
    return "".join((out / name).read_text() for name in ("report.md", "report.html", "report.json")) + stderr


def _report(tmp_path, capsys):
    """Runs nade-report on tmp_path/sweep; returns (report.json, everything it wrote or printed)."""
    main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    return json.loads((tmp_path / "out" / "report.json").read_text()), _outputs(tmp_path / "out", captured.err)


def _write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


# (file, content, what the note says, whether the run is still plotted (re-derived) or left out)
MALFORMED = {
    "status not an object": ("status.json", f'["{SECRET}"]', "not an object", True),
    "status truncated": ("status.json", '{"status": "fini', "not valid JSON", True),
    "status of the wrong type": ("status.json", json.dumps({"status": [SECRET]}), "is not a string", True),
    "status garbage bytes": ("status.json", b"\xff\xfe\x00" + SECRET.encode(), "not valid JSON", True),
    "metrics line not an object": (
        "metrics.jsonl",
        f'["{SECRET}"]\n{{"step": 1, "test/nll": 8.0, "test/baseline_nll": 12.0}}\n',
        "1 line(s) are not JSON objects",
        True,
    ),
    "metrics garbage line": ("metrics.jsonl", f"{SECRET}\n{{}}\n", "1 line(s) are not JSON objects", False),
    "test nll of the wrong type": ("metrics.jsonl", json.dumps({"test/nll": SECRET}) + "\n", None, False),
    "config garbage": ("config.yaml", f"model: [{SECRET}\n  : :", "not valid YAML", True),
    "config a list": ("config.yaml", f"- {SECRET}\n", "not a dict", True),
    "hydra config garbage": (".hydra/hydra.yaml", f"{{{SECRET}", "not valid YAML", True),
    "overrides a mapping": (".hydra/overrides.yaml", f"a: {SECRET}\n", "not a list", True),
    "profiles truncated": ("profiles.json", '{"step": 2', "not valid JSON", True),
    "profiles not a permutation": (
        "profiles.json",
        json.dumps(
            {
                "train_ordering": "identity",
                "image_shape": [4, 4],
                "orderings": {"identity": {"ordering": [0] * 16, "nll": 8.0, "nll_per_position": [0.5] * 16}},
            }
        ),
        "does not hold per-ordering profiles",
        True,
    ),
    "samples not a png": ("samples.png", SECRET, "not a PNG", True),
}


def test_each_malformed_file_is_named_in_one_line_and_the_rest_of_the_sweep_is_reported(tmp_path, capsys):
    """One sweep, one run per kind of bad file (one report: the figures cost a second each)."""
    toy_sweep(tmp_path / "sweep")
    bad_runs = {}
    for index, (case, (file, content, _, _)) in enumerate(MALFORMED.items()):
        if file == "samples.png":  # read for the lowest seed of each (model, ordering) only
            run = tmp_path / "sweep" / BAD
        else:
            run = make_run(
                tmp_path / "sweep",
                f"{10 + index}_case",
                model="nade",
                ordering="reverse",
                seed=10 + index,
                test_nll=8.5,
            )
        _write(run / file, content)
        bad_runs[case] = run.name
    summary, text = _report(tmp_path, capsys)
    assert SECRET not in text
    left_out = [bad_runs[case] for case, (_, _, _, still_plotted) in MALFORMED.items() if not still_plotted]
    assert summary["runs"] == RUNS + len(MALFORMED) - 1
    assert summary["usable"] == summary["runs"] - len(left_out)
    excluded = {Path(e["dir"]).name: e for e in summary["excluded"]}
    assert sorted(excluded) == sorted(left_out)
    assert all(excluded[name]["status"] in ("failed", "unknown") and excluded[name]["reason"] for name in left_out)
    rows = {r["label"]: r for r in summary["data"]["toy"]["rows"]}
    assert len(rows["nade · identity"]["values"]) == 2  # the good runs are all there
    for case, (file, _, note, _) in MALFORMED.items():
        lines = [n for n in summary["notes"] if n.startswith(f"{bad_runs[case]}/{file}:")]
        assert len(lines) == (note is not None), (case, summary["notes"])
        if note is not None:
            assert note in lines[0], case
            assert f"nade-report: {lines[0]}\n" in text  # printed too, one line


def test_a_run_killed_mid_line_is_not_a_malformed_file(tmp_path, capsys):
    toy_sweep(tmp_path / "sweep")
    with open(tmp_path / "sweep" / BAD / "metrics.jsonl", "a") as file:
        file.write('{"step": 300, "train/lo')  # the last line, cut short by a kill
    summary, _ = _report(tmp_path, capsys)
    assert summary["notes"] == []
    assert summary["usable"] == RUNS


def test_a_fifo_planted_at_a_run_file_is_refused_without_waiting(tmp_path, capsys):
    toy_sweep(tmp_path / "sweep")
    (tmp_path / "sweep" / BAD / "status.json").unlink()
    os.mkfifo(tmp_path / "sweep" / BAD / "status.json")  # reading it would block for ever
    summary, _ = _report(tmp_path, capsys)
    assert f"{BAD}/status.json: not a regular file; ignored" in summary["notes"]
    assert summary["usable"] == RUNS  # re-derived from metrics.jsonl


def _with_job_records(sweep: Path) -> None:
    """The sweep's .jobs records, with absolute dirs (as nade-train writes them)."""
    (sweep / ".jobs").mkdir()
    for number, run in enumerate(sorted(p for p in sweep.iterdir() if p.name[0].isdigit())):
        record = {"job": number, "dir": str(run.resolve()), "status": "finished", "reason": None}
        (sweep / ".jobs" / f"{number}.json").write_text(json.dumps(record))


def test_relative_and_absolute_paths_give_the_same_counts(tmp_path, capsys, monkeypatch):
    toy_sweep(tmp_path / "sweep")
    _with_job_records(tmp_path / "sweep")
    monkeypatch.chdir(tmp_path)
    counts = []
    for root, out in ((Path("sweep"), Path("out_relative")), (tmp_path / "sweep", tmp_path / "out_absolute")):
        main([str(root), "--out", str(out)])
        summary = json.loads((tmp_path / out / "report.json").read_text())
        counts.append((summary["runs"], summary["usable"], [len(r["values"]) for r in summary["data"]["toy"]["rows"]]))
    capsys.readouterr()
    assert counts[0] == counts[1] == (RUNS, RUNS, [2, 2, 2, 2])


def test_a_moved_sweeps_job_records_name_dirs_beside_them(tmp_path, capsys):
    """Records written on another machine hold dirs outside this sweep: the report reads the
    dir of that name in the sweep, never the recorded path."""
    toy_sweep(tmp_path / "sweep")
    outside = tmp_path / "elsewhere" / "9_x"
    make_run(tmp_path / "elsewhere", "9_x", model="nade", ordering="identity", seed=5, test_nll=1.4321)
    (tmp_path / "sweep" / ".jobs").mkdir()
    (tmp_path / "sweep" / ".jobs" / "9.json").write_text(json.dumps({"dir": str(outside), "status": "finished"}))
    (tmp_path / "sweep" / ".jobs" / "10.json").write_text(
        json.dumps({"dir": "/old/host/sweep/10_collapsed", "status": "skipped", "reason": "collapsed: into 2"})
    )
    summary, text = _report(tmp_path, capsys)
    assert summary["usable"] == RUNS  # 9_x (outside) is not read: its test NLL 1.0 is nowhere
    assert "1.432" not in text
    excluded = {Path(e["dir"]).name: e for e in summary["excluded"]}
    assert excluded["9_x"]["status"] == "failed"  # known only by its record, which has no test NLL
    assert Path(excluded["9_x"]["dir"]).parent == (tmp_path / "sweep").resolve()
    assert excluded["10_collapsed"]["status"] == "skipped"


def test_a_link_planted_at_report_md_is_refused_and_its_target_untouched(tmp_path, capsys):
    toy_sweep(tmp_path / "sweep")
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    (tmp_path / "sweep" / "report").mkdir()
    (tmp_path / "sweep" / "report" / "report.md").symlink_to(target)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "sweep")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("nade-report: error:")
    assert "report.md: a symbolic link; refusing to write through it" in err
    assert target.read_text() == "precious"
    assert [p.name for p in (tmp_path / "sweep" / "report").iterdir()] == ["report.md"]  # nothing half-written
    assert (tmp_path / "sweep" / "report" / "report.md").is_symlink()


def test_a_link_planted_at_the_report_dir_is_refused(tmp_path, capsys):
    toy_sweep(tmp_path / "sweep")
    (tmp_path / "victim").mkdir()
    (tmp_path / "sweep" / "report").symlink_to(tmp_path / "victim")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "sweep")])
    assert "report: a symbolic link; refusing" in capsys.readouterr().err
    assert list((tmp_path / "victim").iterdir()) == []


def test_links_planted_at_run_files_and_run_dirs_are_not_followed(tmp_path, capsys):
    toy_sweep(tmp_path / "sweep")
    # A metrics file elsewhere with a better test NLL, and a private PNG: neither may be read.
    outside = tmp_path / "private"
    outside.mkdir()
    metrics = outside / "metrics.jsonl"
    metrics.write_text(json.dumps({"test/nll": 1.234, "note": SECRET}) + "\n")
    png = outside / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET.encode())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (metrics, png)}
    (tmp_path / "sweep" / BAD / "metrics.jsonl").unlink()
    (tmp_path / "sweep" / BAD / "metrics.jsonl").symlink_to(metrics)
    (tmp_path / "sweep" / "1_nade_reverse_0" / "samples.png").symlink_to(png)
    (tmp_path / "sweep" / "9_linked_run").symlink_to(
        make_run(outside, "run", model="nade", ordering="identity", seed=7, test_nll=1.5)
    )
    summary, text = _report(tmp_path, capsys)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (metrics, png)} == before
    assert SECRET not in text
    assert "1.234" not in text
    assert "1.500" not in text
    assert base64.b64encode(SECRET.encode()).decode()[:12] not in text
    notes = summary["notes"]
    assert f"{BAD}/metrics.jsonl: a symbolic link; not followed, the file is ignored" in notes
    assert "1_nade_reverse_0/samples.png: a symbolic link; not followed, the file is ignored" in notes
    assert "9_linked_run: a symbolic link to a dir; not followed" in notes
    assert summary["runs"] == RUNS  # the linked run dir is not a run of this sweep
    # The run with the linked metrics keeps its status.json (finished) but has no test NLL: left out.
    assert Path(summary["excluded"][0]["dir"]).name == BAD


def test_interpolations_in_a_run_config_are_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NADE_TEST_SECRET", SECRET)
    toy_sweep(tmp_path / "sweep")
    config_path = tmp_path / "sweep" / BAD / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["data"] = {"name": "${oc.env:NADE_TEST_SECRET}"}
    config["model"] = {"_target_": "${oc.create:{_target_: builtins.open, file: " + str(tmp_path / "x") + ", mode: w}}"}
    config_path.write_text(yaml.safe_dump(config))
    hydra_path = tmp_path / "sweep" / BAD / ".hydra" / "hydra.yaml"
    hydra_path.write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": "<script>alert(1)</script>"}}}}))
    summary, text = _report(tmp_path, capsys)
    assert SECRET not in text
    assert not (tmp_path / "x").exists()
    assert "${oc.env:NADE_TEST_SECRET}" in summary["data"]  # its data set's name, taken literally
    page = (tmp_path / "out" / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # a name from a run dir is text, never markup
    assert "<script" not in page


# ---------------------------------------------------------------------------------------
# Seed noise.


@pytest.mark.parametrize("df", [1.0, 1.7, 2.0, 3.4, 10.0, 57.3, 1000.0])
def test_t_quantile_matches_scipy(df):
    stats = pytest.importorskip("scipy.stats")
    for probability in (0.6, 0.975, 0.995):
        assert aggregate.t_quantile(probability, df) == pytest.approx(stats.t.ppf(probability, df), rel=1e-9)


@pytest.mark.parametrize("sizes", [(2, 2), (3, 3), (3, 5), (8, 4)])
def test_welch_interval_matches_scipy(sizes):
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(sum(sizes))
    x, y = rng.normal(8.3, 0.1, sizes[0]), rng.normal(8.0, 0.3, sizes[1])
    difference, half_width, df = aggregate.gap_interval(x, y)
    reference = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert difference - half_width == pytest.approx(reference.low, rel=1e-9)
    assert difference + half_width == pytest.approx(reference.high, rel=1e-9)
    assert df == pytest.approx(stats.ttest_ind(x, y, equal_var=False).df, rel=1e-12)


def test_one_seed_has_no_interval_and_equal_seeds_a_zero_one():
    assert aggregate.gap_interval([8.5], [8.0, 8.1]) == (pytest.approx(0.45), None, None)
    difference, half_width, _ = aggregate.gap_interval([8.5, 8.5], [8.0, 8.0])
    assert (difference, half_width) == (pytest.approx(0.5), 0.0)


def _ordering_sweep(root: Path, identity: list[float], reverse: list[float]) -> None:
    for seed, (a, b) in enumerate(zip(identity, reverse, strict=True)):
        make_run(root, f"{2 * seed}_i", model="nade", ordering="identity", seed=seed, test_nll=a)
        make_run(root, f"{2 * seed + 1}_r", model="nade", ordering="reverse", seed=seed, test_nll=b)


def test_findings_say_whether_a_gap_exceeds_seed_noise(tmp_path):
    stats = pytest.importorskip("scipy.stats")
    within = ([8.0, 8.2, 8.1], [8.3, 7.9, 8.28])  # gap 0.06, spread ~0.2
    exceeds = ([8.0, 8.02, 8.01], [8.5, 8.52, 8.49])  # gap 0.49, spread 0.01
    for name, (identity, reverse) in (("within", within), ("exceeds", exceeds)):
        _ordering_sweep(tmp_path / name, identity, reverse)
        build_report(tmp_path / name, tmp_path / f"out_{name}")
        summary = json.loads((tmp_path / f"out_{name}" / "report.json").read_text())["data"]["toy"]
        (gap,) = summary["ordering_gaps"]
        low, high = stats.ttest_ind(reverse, identity, equal_var=False).confidence_interval(0.95)
        assert gap["difference"] - gap["half_width"] == pytest.approx(low)
        assert gap["difference"] + gap["half_width"] == pytest.approx(high)
        assert gap["exceeds_noise"] is bool(low > 0)
        sentence = (
            f"reverse is {gap['difference']:.2f} ± {gap['half_width']:.2f} nats behind identity: "
            f"{name} seed noise (n = 3)."
        )
        md = (tmp_path / f"out_{name}" / "report.md").read_text()
        assert sentence in md
        assert sentence in (tmp_path / f"out_{name}" / "report.html").read_text()
    assert not os.path.exists(tmp_path / "within" / "report")  # --out elsewhere: the sweep dir is not written


def test_an_unknown_ordering_for_the_profiles_is_one_line_naming_the_choices(tmp_path, capsys):
    toy_sweep(tmp_path / "sweep")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "sweep"), "--orderings", "identity,revrse"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    choices = "choose from identity, reverse"
    assert err == f"nade-report: error: --orderings: 'revrse' has no profile in this sweep; {choices}"
    assert not (tmp_path / "sweep" / "report").exists()  # refused before any work


def test_a_run_is_named_by_its_model_choice_then_registry_key_then_target(tmp_path):
    from nade_jax.report.records import read_run

    run = make_run(tmp_path, "0_x", model="nade", ordering="identity", seed=0, test_nll=8.0)
    assert read_run(run).model == "nade"  # the Hydra choice
    (run / ".hydra" / "hydra.yaml").unlink()
    assert read_run(run).model == "BinaryNADE"  # an old run: the last part of model._target_, never imported
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"] = {"name": "made", "_target_": "os.system"}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_run(run).model == "made"  # the registry's key
