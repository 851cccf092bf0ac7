"""``bilatcf benchmark``: config checks, the cell grid, resuming, results and rendering, launchers.

Most tests replace ``bilatcf fit`` by a stand-in script (``FAKE_FIT``) that writes a metrics.json and a last.ckpt the
way a run does, so the runner's own logic is exercised in milliseconds; the slow test runs a real tiny grid.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import textwrap
from io import StringIO
from pathlib import Path

import pytest
import yaml

from bilatcf import benchmark
from bilatcf.cli import main
from bilatcf.errors import ConfigError, MissingDependencyError
from bilatcf.registry import list_models

REPO = Path(__file__).resolve().parents[1]
GRADCAM = str(REPO / "configs" / "ablations" / "cam" / "gradcam.yaml")

#: Stands in for `bilatcf fit`: records its arguments, writes last.ckpt and metrics.json where a run writes them.
FAKE_FIT = textwrap.dedent(
    """
    import json, os, pathlib, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_FIT_CALLS"], "a") as handle:
        handle.write(json.dumps(args) + "\\n")
    if "--fail" in args:
        print("a problem the user has to fix")
        sys.exit(3)
    root = pathlib.Path(args[args.index("--trainer.default_root_dir") + 1])
    seed = int(args[args.index("--seed_everything") + 1])
    model = args[args.index("--model") + 1] if "--model" in args else "cam"
    run = root / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    auc = 0.6 + 0.1 * seed + (0.1 if model == "sbf" else 0.0)
    metrics = {
        "model": model, "data": "BilateralDataModule(synthetic)", "seed": seed, "num_test_pairs": 10,
        "train_seconds": 10.0 + seed, "pairs_per_second": 5.0, "expl_threshold_rule": "rule, with a comma",
        "test/auc": auc, "test/auc_ci_low": auc - 0.1, "test/auc_ci_high": auc + 0.1, "test/loc_error": 0.9,
        "test/seg_iou": 0.05, "test/mean_tiou": 0.02,
    }
    if model == "sbf":
        metrics["test/expl_iou"] = 0.25
    (run / "metrics.json").write_text(json.dumps(metrics))
    """
)


def write_config(path: Path, **content) -> str:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return str(path)


def small_config(tmp_path: Path, **overrides) -> str:
    content = {
        "name": "small",
        "description": "Two models on the synthetic default.",
        "models": ["sbf", {"model": GRADCAM, "label": "gradcam"}],
        "data": ["synthetic"],
        "seeds": [0, 1],
        "args": ["--trainer.max_epochs", 1],
        "reference": {
            "source": "A paper, Table 1",
            "note": "Their data.",
            "columns": [{"name": "AUC (b)", "ours": "auc", "what": "INbreast, ResNet50"}],
            "values": {"sbf": {"AUC (b)": 0.862}, "gradcam": {"AUC (b)": [0.8, 0.7, 0.9]}},
        },
        **overrides,
    }
    return write_config(tmp_path / "small.yaml", **content)


@pytest.fixture
def fake_fit(tmp_path, monkeypatch):
    """Replace `bilatcf fit` by FAKE_FIT; returns a function giving the argument lists of its calls so far."""
    script = tmp_path / "fake_fit.py"
    script.write_text(FAKE_FIT)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_FIT_CALLS", str(calls))
    monkeypatch.setattr(benchmark, "FIT_PREFIX", (sys.executable, str(script)))
    monkeypatch.chdir(tmp_path)  # cells run in the current folder: here, outside any git checkout

    def read() -> list[list[str]]:
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.is_file() else []

    return read


def run(tmp_path: Path, config: str, *extra: str) -> int:
    return main(["benchmark", "--config", config, "--runs", str(tmp_path / "runs"), "--results",
                 str(tmp_path / "results"), *extra])  # fmt: skip


# ------------------------------------------------------------------------------------------------ config checks
def test_config_problems_are_reported_at_once_with_file_field_and_fix(tmp_path):
    path = write_config(
        tmp_path / "bad.yaml",
        name="bad name",
        model=["vanilla"],
        models=[
            "vanila",
            str(tmp_path / "nowhere.yaml"),
            {"model": "sbf", "args": ["--seed_everything", 3]},
            {"model": "cam", "label": "sbf"},
        ],  # fmt: skip
        data=[{"data": str(tmp_path / "no_data.yaml"), "label": "real"}],
        seeds=[0, 0],
        jobs=0,
        reference={"source": "x", "columns": [{"name": "AUC"}], "values": {"gap": {"AUC": 0.8}}},
    )
    with pytest.raises(ConfigError) as error:
        benchmark.load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "docs/benchmarks.md" in message
    expected = [
        "name: give the leaderboard's name",
        "top level: unknown key 'model' (did you mean 'models'?)",
        "models[0]: unknown model 'vanila' (did you mean 'vanilla'?)",
        "--skip-missing runs the other entries",
        f"models[1]: {tmp_path / 'nowhere.yaml'} does not exist",
        "models[2].args: --seed_everything is set by the runner",
        "models: label 'sbf' appears twice",
        f"data[0].data: {tmp_path / 'no_data.yaml'} does not exist",
        "seeds: [0, 0]: give distinct integers",
        "jobs: 0: give the number of cells run at once",
        "reference.values.gap: 'gap' is not a model label of this config",
    ]
    for text in expected:
        assert text in message, text
    assert message.count("\n  - ") == 10  # one line per problem


def test_a_bad_config_ends_the_command_with_exit_status_2_and_no_traceback(tmp_path, capsys):
    path = small_config(tmp_path, seeds=None)
    assert run(tmp_path, path) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bilatcf: error: {path}: 1 problem(s)") and "seeds: give a list of integers" in err
    assert "Traceback" not in err


def test_skip_missing_leaves_missing_models_out_and_lists_them(tmp_path):
    path = small_config(tmp_path, models=["sbf", "notyet", str(tmp_path / "ablations" / "x" / "soon.yaml")],
                        reference=None)  # fmt: skip
    with pytest.raises(ConfigError, match="unknown model 'notyet'"):
        benchmark.load_config(path)
    bench = benchmark.load_config(path, skip_missing=True)
    assert [m.label for m in bench.models] == ["sbf"]
    assert [m.label for m in bench.missing] == ["notyet", "x/soon"]
    text = benchmark.render(bench, [], total=2)
    assert (
        "Not in the grid (left out with `--skip-missing`)" in text
        and "- `notyet`: no model 'notyet' is registered yet" in text
    )
    assert f"- `x/soon`: {tmp_path / 'ablations' / 'x' / 'soon.yaml'} does not exist yet" in text


def test_a_model_yaml_must_name_a_registered_model(tmp_path):
    other = write_config(tmp_path / "other.yaml", model={"class_path": "somewhere.Else"})
    with pytest.raises(ConfigError, match="model.class_path somewhere.Else is not a registered model"):
        benchmark.load_config(small_config(tmp_path, models=[other], reference=None), skip_missing=True)


def test_the_shipped_configs_are_valid(tmp_path):
    for path in sorted((REPO / "configs" / "benchmark").glob("*.yaml")):
        bench = benchmark.load_config(path, skip_missing=True)  # models of unmerged branches are left out
        assert bench.name == path.stem
        assert bench.models and bench.seeds == (0, 1, 2)
        assert all(m.label in {e.label for e in bench.models} | {e.label for e in bench.missing}
                   for m in bench.models)  # fmt: skip


# ------------------------------------------------------------------------------------------------ the grid
def test_the_grid_has_one_cell_per_model_data_seed_fold_with_its_own_folder(tmp_path):
    path = small_config(
        tmp_path,
        models=[{"model": "sff", "args": "--model.lr 0.001"}, {"model": GRADCAM}],
        data=["synthetic", {"label": "misaligned 0.2", "args": ["--data.misalignment", 0.2]}],
        folds=[0, 1],
        reference=None,
    )
    bench = benchmark.load_config(path)
    grid = benchmark.cells(bench, tmp_path / "runs")
    assert len(grid) == 2 * 2 * 2 * 2 and len({c.id for c in grid}) == len(grid)
    assert len({c.run_dir for c in grid}) == len(grid) and all(c.run_dir.parent == tmp_path / "runs" / "small"
                                                               for c in grid)  # fmt: skip
    assert grid[0].id == "sff__synthetic__seed0__fold0" and grid[-1].id == "cam-gradcam__misaligned-0.2__seed1__fold1"
    sff = next(c for c in grid if c.data.label == "misaligned 0.2")
    command = list(sff.command)
    assert command[:4] == ["bilatcf", "fit", "--model", "sff"]
    # later options win: common args, then the data entry's, the model entry's, the model's data needs, the runner's
    order = ["--trainer.max_epochs", "--data.misalignment", "--model.lr", "--data.four_view", "--seed_everything",
             "--data.fold", "--trainer.default_root_dir"]  # fmt: skip
    assert [command.index(flag) for flag in order] == sorted(command.index(flag) for flag in order)
    assert command[command.index("--data.four_view") + 1] == "true"  # SFF's data_options
    assert command[command.index("--trainer.default_root_dir") + 1] == str(sff.run_dir)
    gradcam = next(c for c in grid if c.model.label == "cam/gradcam")
    assert list(gradcam.command[2:4]) == ["--config", GRADCAM] and "--data.four_view" not in gradcam.command


def test_all_is_every_visible_model_not_named_by_another_entry(tmp_path):
    path = small_config(tmp_path, models=["all", {"model": "cam", "label": "gap", "args": ["--model.lr", 0.1]}],
                        reference=None)  # fmt: skip
    bench = benchmark.load_config(path)
    labels = [m.label for m in bench.models]
    assert set(labels) == (set(list_models()) - {"cam"}) | {"gap"} and "_template" not in labels


def test_the_config_hash_follows_the_command_and_the_yaml_content_not_the_folder(tmp_path):
    ablation = tmp_path / "configs" / "ablations" / "cam" / "mine.yaml"
    ablation.parent.mkdir(parents=True)
    ablation.write_text("model:\n  class_path: bilatcf.models.cam.CAM\n  init_args: {map: gradcam}\n")
    path = small_config(tmp_path, models=[str(ablation)], reference=None)
    bench = benchmark.load_config(path)
    first = benchmark.cells(bench, tmp_path / "a")[0]
    assert first.model.label == "cam/mine"
    assert benchmark.cells(bench, tmp_path / "b")[0].config_hash == first.config_hash
    ablation.write_text("# a comment\n" + ablation.read_text())
    assert benchmark.cells(bench, tmp_path / "a")[0].config_hash == first.config_hash
    ablation.write_text(ablation.read_text().replace("gradcam", "cam"))
    assert benchmark.cells(bench, tmp_path / "a")[0].config_hash != first.config_hash
    longer = benchmark.load_config(small_config(tmp_path, models=[str(ablation)], args=["--trainer.max_epochs", 2],
                                                reference=None))  # fmt: skip
    assert (
        benchmark.cells(longer, tmp_path / "a")[0].config_hash != benchmark.cells(bench, tmp_path / "a")[0].config_hash
    )


# ------------------------------------------------------------------------------------------------ resuming
def test_a_cell_killed_after_its_checkpoint_resumes_with_ckpt_path_last(tmp_path, capsys):
    bench = benchmark.load_config(small_config(tmp_path))
    cell = benchmark.cells(bench, tmp_path / "runs")[0]
    assert benchmark.cell_state(cell, {}) == benchmark.NEW and "--ckpt_path" not in benchmark.run_command(cell)
    checkpoints = cell.run_dir / "lightning_logs" / "version_0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"")  # a run killed after its first epoch: last.ckpt, no metrics.json
    assert benchmark.cell_state(cell, {}) == benchmark.RESUME
    assert benchmark.run_command(cell) == [*cell.command, "--ckpt_path", "last"]
    assert run(tmp_path, bench.path, "--dry-run") == 0
    printed = capsys.readouterr().out
    assert f"{cell.id}  [resume; config {cell.config_hash}]" in printed
    assert "--trainer.enable_progress_bar false --ckpt_path last" in printed
    assert not (tmp_path / "results").exists()  # a dry run writes nothing
    (checkpoints.parent / "metrics.json").write_text("{}")
    assert benchmark.cell_state(cell, {}) == benchmark.DONE


def test_grid_rerun_resume_and_failure_with_a_stand_in_fit(tmp_path, fake_fit, capsys):
    path = small_config(tmp_path, models=["sbf", {"model": GRADCAM, "label": "gradcam"},
                                          {"model": "vanilla", "args": ["--fail"]}], jobs=2)  # fmt: skip
    assert run(tmp_path, path) == 1  # the failing cells are reported, the others finish
    out, err = capsys.readouterr()
    assert len(fake_fit()) == 6
    assert out.count(": done in ") == 4 and out.count("FAILED") == 2 and "a problem the user has to fix" in out
    assert "2 cell(s) failed" in err and "vanilla__synthetic__seed0" in err and "run the same command again" in err
    csv_path, md_path = tmp_path / "results" / "leaderboard_small.csv", tmp_path / "results" / "leaderboard_small.md"
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["cell"] for r in rows] == ["sbf__synthetic__seed0", "sbf__synthetic__seed1",
                                         "gradcam__synthetic__seed0", "gradcam__synthetic__seed1"]  # fmt: skip
    assert rows[0]["model"] == "sbf" and rows[2]["model"] == "cam" and rows[2]["label"] == "gradcam"
    assert rows[0]["expl_threshold_rule"] == "rule, with a comma" and rows[1]["test/auc"] == "0.7999999999999999"
    assert rows[0]["train_seconds"] == "10.0" and rows[0]["pairs_per_second"] == "5.0" and rows[0]["attempts"] == "1"
    assert len(rows[0]["config_hash"]) == 12 and rows[0]["git"] == "unknown"  # tmp_path is not a git checkout
    md = md_path.read_bytes()

    # Finished cells are skipped; the failed ones run again (still failing), and the .md is the same bytes.
    assert run(tmp_path, path) == 1
    assert len(fake_fit()) == 8 and md_path.read_bytes() == md
    assert run(tmp_path, path, "--render-only") == 0 and md_path.read_bytes() == md

    # A cell with a last checkpoint and no metrics resumes; the others are not touched.
    metrics = benchmark.metrics_file(tmp_path / "runs" / "small" / "gradcam__synthetic__seed1")
    metrics.unlink()
    capsys.readouterr()
    fixed = small_config(tmp_path, models=["sbf", {"model": GRADCAM, "label": "gradcam"}])
    assert run(tmp_path, fixed) == 0
    calls = fake_fit()[8:]
    assert len(calls) == 1 and calls[0][-2:] == ["--ckpt_path", "last"] and "gradcam__synthetic__seed1" in str(calls)
    assert "1 to resume, 0 to run" in capsys.readouterr().out
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["attempts"] for r in rows] == ["1", "1", "1", "2"]


def test_multi_gpu_options_reach_every_cell_and_a_model_entry_overrides_them(tmp_path, fake_fit):
    # docs/multi_gpu.md: a cell gets several GPUs (or processes) from --trainer.* options in the config's args.
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", 4, "--trainer.num_nodes", 2]
    models = ["sbf", {"model": GRADCAM, "label": "gradcam", "args": ["--trainer.devices", 2]}]
    path = small_config(tmp_path, models=models, seeds=[0], args=ddp, reference=None)
    assert run(tmp_path, path) == 0

    def last_value(call: list[str], flag: str) -> str:  # what the fit's parser keeps: the last occurrence
        return [call[i + 1] for i, arg in enumerate(call[:-1]) if arg == flag][-1]

    sbf, gradcam = fake_fit()
    for call, devices in ((sbf, "4"), (gradcam, "2")):
        assert last_value(call, "--trainer.strategy") == "ddp" and last_value(call, "--trainer.num_nodes") == "2"
        assert last_value(call, "--trainer.devices") == devices
    cell = benchmark.cells(benchmark.load_config(path), tmp_path / "runs")[0]
    spec = benchmark.job_spec(cell, {}, ranked=True)  # what each SLURM task of the cell runs
    assert last_value(spec["command"], "--trainer.devices") == "4" and spec["ranked"]


def test_a_changed_cell_is_refused_until_rerun_changed(tmp_path, fake_fit, capsys):
    path = small_config(tmp_path, seeds=[0], reference=None)
    assert run(tmp_path, path) == 0 and len(fake_fit()) == 2
    changed = small_config(tmp_path, seeds=[0], reference=None, args=["--trainer.max_epochs", 2])
    assert run(tmp_path, changed) == 2
    err = capsys.readouterr().err
    assert "2 cell(s) of" in err and "ran with another command" in err and "--rerun-changed" in err
    assert run(tmp_path, changed, "--rerun-changed") == 0 and len(fake_fit()) == 4
    assert fake_fit()[-1][fake_fit()[-1].index("--trainer.max_epochs") + 1] == "2"


def test_cells_kept_in_the_csv_count_as_done_without_their_run_folders(tmp_path, fake_fit, capsys):
    path = small_config(tmp_path, seeds=[0])
    assert run(tmp_path, path) == 0
    md = (tmp_path / "results" / "leaderboard_small.md").read_bytes()
    shutil.rmtree(tmp_path / "runs")  # e.g. a fresh clone with the committed CSV: add cells without re-running these
    assert run(tmp_path, path) == 0 and len(fake_fit()) == 2
    assert "2 done, 0 to resume, 0 to run" in capsys.readouterr().out
    assert (tmp_path / "results" / "leaderboard_small.md").read_bytes() == md


def test_a_cell_another_leaderboard_ran_with_the_same_command_is_shared_not_trained(tmp_path, fake_fit, capsys):
    assert run(tmp_path, small_config(tmp_path, seeds=[0])) == 0 and len(fake_fit()) == 2
    other = small_config(tmp_path, name="other", models=["cam", "sbf"], seeds=[0], reference=None)
    assert run(tmp_path, other, "--dry-run") == 0
    assert "sbf__synthetic__seed0  [done (csv), shared from small;" in capsys.readouterr().out
    assert run(tmp_path, other) == 0
    assert [call[call.index("--model") + 1] for call in fake_fit()[2:]] == ["cam"]  # sbf's run is small's
    rows = {row["cell"]: row for row in benchmark.read_csv(tmp_path / "results" / "leaderboard_other.csv")}
    small_sbf = benchmark.read_csv(tmp_path / "results" / "leaderboard_small.csv")[0]
    assert (
        rows["sbf__synthetic__seed0"]["shared_from"] == "small" and rows["cam__synthetic__seed0"]["shared_from"] == ""
    )
    assert rows["sbf__synthetic__seed0"]["test/auc"] == small_sbf["test/auc"]
    md = (tmp_path / "results" / "leaderboard_other.md").read_bytes()
    assert b"same command (config hash): 1 from `small`." in md
    shutil.rmtree(tmp_path / "runs")  # the committed CSV alone: nothing is trained again and the same bytes come out
    assert run(tmp_path, other) == 0 and len(fake_fit()) == 3
    assert (tmp_path / "results" / "leaderboard_other.md").read_bytes() == md
    third = small_config(tmp_path, name="third", models=["sbf"], seeds=[0], reference=None)
    assert run(tmp_path, third, "--no-shared") == 0 and len(fake_fit()) == 4


# ------------------------------------------------------------------------------------------------ rendering
def test_the_leaderboard_is_rendered_from_the_csv_with_mean_sd_ci_and_the_papers_numbers(tmp_path, fake_fit):
    path = small_config(tmp_path)
    assert run(tmp_path, path) == 0
    md = (tmp_path / "results" / "leaderboard_small.md").read_text()
    # sbf: AUC 0.7 and 0.8 (seeds 0, 1) -> 0.750 ± 0.071, CI bounds 0.6/0.7 and 0.8/0.9 -> [0.650, 0.850]
    assert "| sbf | 2 | 0.750 ± 0.071 [0.650, 0.850] | 0.900 ± 0.000 | 0.050 ± 0.000 | 0.020 ± 0.000 | 10 ± 1 |" in md
    assert "| model | n | auc | loc_error | seg_iou | mean_tiou | train s |" in md
    assert "| model | n | expl_iou |\n|---|---:|---:|\n| sbf | 2 | 0.250 ± 0.000 |" in md  # only models that have it
    assert "## Published numbers (the papers' own data, not these runs)" in md and "A paper, Table 1. Their data." in md
    assert "| model | ours: auc (synthetic) | paper: AUC (b) |" in md
    assert "| sbf | 0.750 ± 0.071 [0.650, 0.850] | 0.862 |" in md
    assert "| gradcam | 0.650 ± 0.071 [0.550, 0.750] | 0.800 (0.700–0.900) |" in md
    assert "4 of 4 cells finished; seeds 0, 1; git unknown (4 cells)" in md
    assert "| gradcam | `--config " in md and "`bilatcf benchmark --config small.yaml`" in md
    assert "20" not in md.split("\n", 3)[2]  # no date in the provenance line


def test_pointing_joins_the_main_table_and_expl_pointing_the_explanation_table(tmp_path, fake_fit):
    path = small_config(tmp_path)
    assert run(tmp_path, path) == 0
    bench = benchmark.load_config(path)
    rows = benchmark.read_csv(tmp_path / "results" / "leaderboard_small.csv")
    for row in rows:
        row["test/pointing"] = "0.25" if row["label"] == "sbf" else "0.5"
        if row["label"] == "sbf":  # only sbf has an explanation map in the stand-in runs
            row.update({"test/expl_pointing": "0.75", "test/expl_loc_error": "0.5"})
    md = benchmark.render(bench, rows, 4)
    assert "| model | n | auc | loc_error | pointing | seg_iou | mean_tiou | train s |" in md
    assert "| sbf | 2 | 0.750 ± 0.071 [0.650, 0.850] | 0.900 ± 0.000 | 0.250 ± 0.000 | 0.050 ± 0.000 |" in md
    assert "| gradcam | 2 | 0.650 ± 0.071 [0.550, 0.750] | 0.900 ± 0.000 | 0.500 ± 0.000 |" in md
    explanation = "| model | n | expl_iou | expl_loc_error | expl_pointing |\n|---|---:|---:|---:|---:|\n"
    assert explanation + "| sbf | 2 | 0.250 ± 0.000 | 0.500 ± 0.000 | 0.750 ± 0.000 |\n\n" in md  # sbf only
    # Without the new keys (a CSV from before they existed) the tables are those of the committed test above.
    before = (tmp_path / "results" / "leaderboard_small.md").read_text()
    assert "| model | n | auc | loc_error | seg_iou | mean_tiou | train s |" in before and "pointing |" not in before


def test_a_metric_only_some_cells_have_shows_how_many(tmp_path, fake_fit):
    path = small_config(tmp_path)  # sbf and gradcam, seeds 0 and 1
    assert run(tmp_path, path) == 0
    csv_path = tmp_path / "results" / "leaderboard_small.csv"
    rows = benchmark.read_csv(csv_path)
    rows[0]["test/loc_error"] = ""  # sbf seed 0 ran before the metric existed
    benchmark.write_csv(csv_path, rows)
    assert run(tmp_path, path, "--render-only") == 0
    md = (tmp_path / "results" / "leaderboard_small.md").read_text()
    assert "| sbf | 2 | 0.750 ± 0.071 [0.650, 0.850] | 0.900 (n=1) |" in md
    assert "| gradcam | 2 | 0.650 ± 0.071 [0.550, 0.750] | 0.900 ± 0.000 |" in md


def test_a_hand_edited_value_in_the_csv_is_refused_with_its_line_and_column(tmp_path, fake_fit, capsys):
    path = small_config(tmp_path)
    assert run(tmp_path, path) == 0
    csv_path = tmp_path / "results" / "leaderboard_small.csv"
    good = csv_path.read_bytes()
    rows = benchmark.read_csv(csv_path)
    rows[1]["test/auc"] = "0.8O"  # a typo: a letter O
    benchmark.write_csv(csv_path, rows)
    broken = csv_path.read_bytes()
    md = (tmp_path / "results" / "leaderboard_small.md").read_bytes()
    for extra in ((), ("--render-only",)):
        assert run(tmp_path, path, *extra) == 2
        err = capsys.readouterr().err
        assert f"{csv_path}, line 3 (cell {rows[1]['cell']}): `test/auc` holds '0.8O', not a number" in err
        assert "delete the row to run the cell again" in err
        assert csv_path.read_bytes() == broken and (tmp_path / "results" / "leaderboard_small.md").read_bytes() == md
    lines = good.decode().splitlines(keepends=True)
    csv_path.write_text("".join([lines[0], lines[1].rstrip("\n") + ",1\n", *lines[2:]]))  # one field too many
    assert run(tmp_path, path, "--render-only") == 2 and "more fields than the header" in capsys.readouterr().err
    other = small_config(tmp_path, name="other", models=["sbf"], seeds=[0], reference=None)
    assert run(tmp_path, other, "--dry-run") == 0  # another leaderboard's broken CSV is not shared from, and said so
    out = capsys.readouterr().out
    assert "not shared from leaderboard_small.csv: " in out and "shared from small" not in out


COMMITTED = sorted(
    p.stem.removeprefix("leaderboard_") for p in (REPO / "benchmarks" / "results").glob("leaderboard_*.csv")
)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_leaderboards_render_byte_identically_from_their_csv(name, monkeypatch):
    monkeypatch.chdir(REPO)  # the provenance line shows the config path relative to the working folder
    bench = benchmark.load_config(REPO / "configs" / "benchmark" / f"{name}.yaml")
    rows = benchmark.read_csv(REPO / "benchmarks" / "results" / f"leaderboard_{name}.csv")
    md = benchmark.render(bench, rows, len(benchmark.cells(bench)))
    assert md == (REPO / "benchmarks" / "results" / f"leaderboard_{name}.md").read_text()


def test_paper_numbers_keep_their_digits():
    assert benchmark._paper_value(0.82) == "0.820" and benchmark._paper_value(0.8721) == "0.8721"
    assert (
        benchmark._paper_value(None) == "NA"
        and benchmark._paper_value([0.891, 0.8721, 0.909]) == "0.891 (0.8721–0.909)"
    )


def test_the_progress_view_marks_each_cell(tmp_path):
    bench = benchmark.load_config(small_config(tmp_path, reference=None))
    grid = benchmark.cells(bench, tmp_path / "runs")
    progress = benchmark.Progress(bench, grid, {c.id: benchmark.NEW for c in grid}, interactive=False)
    progress.started(grid[0])
    progress.states[grid[1].id] = benchmark.DONE
    from rich.console import Console

    console = Console(file=StringIO(), width=100)
    console.print(progress._table())
    text = console.file.getvalue()
    assert "sbf" in text and "▶✓" in text and "··" in text and "1 done, 2 new, 1 running" in text


# ------------------------------------------------------------------------------------------------ launchers
def test_the_local_launcher_runs_cells_as_submitit_jobs(tmp_path, fake_fit, capsys):
    pytest.importorskip("submitit")
    path = small_config(tmp_path, seeds=[0], reference=None)
    assert run(tmp_path, path, "--launcher", "local", "--jobs", "2", "--time", "5") == 0
    assert len(fake_fit()) == 2 and "(local)" in capsys.readouterr().out
    assert list((tmp_path / "runs" / "small" / "_submitit").glob("*_log.out"))
    rows = list(csv.DictReader((tmp_path / "results" / "leaderboard_small.csv").open()))
    assert [r["label"] for r in rows] == ["sbf", "gradcam"]


def test_a_requeued_slurm_job_resumes(tmp_path, fake_fit):
    pytest.importorskip("submitit")
    bench = benchmark.load_config(small_config(tmp_path, seeds=[0], reference=None))
    cell = benchmark.cells(bench, tmp_path / "runs")[0]
    spec = benchmark.job_spec(cell, {})
    requeued = benchmark.CellJob().checkpoint(spec)  # what submitit calls before a timeout or preemption
    assert isinstance(requeued.function, benchmark.CellJob) and requeued.args == (spec,)
    (cell.run_dir / "lightning_logs" / "version_0" / "checkpoints").mkdir(parents=True)
    (cell.run_dir / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert requeued.function(*requeued.args) == 0
    assert fake_fit()[0][-2:] == ["--ckpt_path", "last"]
    assert requeued.function(*requeued.args) == 0 and len(fake_fit()) == 1  # finished: not run again


def test_the_slurm_launcher_submits_one_array_with_the_options(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    with pytest.raises(ConfigError, match="Run the command on a machine of the cluster"):
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        benchmark.make_executor("slurm", tmp_path / "s", 3, "x", benchmark.SlurmOptions())
    fake = tmp_path / "bin" / "srun"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    options = benchmark.SlurmOptions(partition="gpu", time=90, gpus=4, cpus_per_task=8, mem_gb=64, account="lab")
    executor = benchmark.make_executor("slurm", tmp_path / "s", 3, "small", options)
    script = executor._executor._make_submission_file_text("python -c 1", "123")
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=4", "--ntasks-per-node=4", "--cpus-per-task=8",
                 "--mem=64GB", "--account=lab", "--job-name=bilatcf-small"):  # fmt: skip
        assert f"#SBATCH {line}" in script, line
    assert executor._executor.parameters["array_parallelism"] == 3


def test_without_submitit_the_launchers_say_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'bilatcf\[slurm\]'"):
        benchmark.import_submitit()
    assert run(tmp_path, small_config(tmp_path, seeds=[0], reference=None), "--launcher", "slurm") == 2
    assert "pip install 'bilatcf[slurm]'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_a_tiny_real_grid_end_to_end_reruns_identically_and_resumes_through_the_local_launcher(
    tmp_path, monkeypatch, capsys
):
    """2 models x 1 seed of real `bilatcf fit` runs on tiny data (about a minute on 2 cores), then the re-run that
    trains nothing, then a cell whose metrics are gone resumed from its last.ckpt by a submitit local job."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    tiny_data = ["--data.num_patients", 48, "--data.image_size", "[64, 32]", "--data.batch_size", 4]
    limits = ["--trainer.max_epochs", 1, "--trainer.limit_train_batches", 2, "--trainer.limit_val_batches", 2,
              "--trainer.limit_test_batches", 2, "--trainer.accelerator", "cpu", "--trainer.enable_model_summary",
              "false"]  # fmt: skip
    path = small_config(
        tmp_path,
        models=[{"model": m, "args": ["--model.backbone", "test_resnet"]} for m in ("vanilla", GRADCAM)],
        data=[{"label": "tiny", "args": tiny_data}],
        seeds=[0],
        args=limits,
        jobs=2,
        reference=None,
    )
    assert run(tmp_path, path) == 0, capsys.readouterr()
    results = tmp_path / "results"
    md = (results / "leaderboard_small.md").read_bytes()
    rows = list(csv.DictReader((results / "leaderboard_small.csv").open()))
    assert [r["model"] for r in rows] == ["vanilla", "cam"] and all(r["test/auc"] and r["train_seconds"] for r in rows)
    assert "test/expl_iou" in rows[0] and rows[1]["test/expl_iou"]  # Grad-CAM has an explanation map

    assert run(tmp_path, path) == 0
    assert "2 done, 0 to resume, 0 to run" in capsys.readouterr().out
    assert (results / "leaderboard_small.md").read_bytes() == md

    pytest.importorskip("submitit")
    cell = tmp_path / "runs" / "small" / "vanilla__tiny__seed0"
    benchmark.metrics_file(cell).unlink()
    assert run(tmp_path, path, "--launcher", "local", "--time", "10") == 0
    assert "1 to resume" in capsys.readouterr().out
    log = (cell / benchmark.LOG).read_text()
    assert log.count("$ bilatcf fit") == 2 and "--trainer.enable_progress_bar false --ckpt_path last\n" in log
    assert benchmark.metrics_file(cell) is not None


def test_only_runs_the_named_models_and_the_leaderboard_keeps_every_finished_cell(tmp_path, fake_fit, capsys):
    path = small_config(tmp_path)
    assert run(tmp_path, path, "--only", "gradcam") == 0
    assert {call[call.index("--config") + 1] for call in fake_fit()} == {GRADCAM}
    out = capsys.readouterr().out
    assert "0 done, 0 to resume, 2 to run (2 more outside --only)" in out and "[2/2] gradcam" in out
    assert run(tmp_path, path) == 0
    assert len(fake_fit()) == 4, "the second run trains only the cells the first left out"
    rows = list(csv.DictReader((tmp_path / "results" / "leaderboard_small.csv").open()))
    assert sorted(row["label"] for row in rows) == ["gradcam", "gradcam", "sbf", "sbf"]
    assert run(tmp_path, path, "--only", "gap") == 2
    assert "--only gap: no model entry" in capsys.readouterr().err


def test_seeds_runs_one_seed_of_every_model_first_and_combines_with_only(tmp_path, fake_fit, capsys):
    path = small_config(tmp_path)
    assert run(tmp_path, path, "--seeds", "1") == 0
    assert {call[call.index("--seed_everything") + 1] for call in fake_fit()} == {"1"}
    assert "0 done, 0 to resume, 2 to run (2 more outside --seeds)" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "results" / "leaderboard_small.csv").open()))
    assert sorted((row["label"], row["seed"]) for row in rows) == [("gradcam", "1"), ("sbf", "1")]
    assert run(tmp_path, path, "--seeds", "0", "--only", "sbf") == 0
    assert len(fake_fit()) == 3
    assert "2 done, 0 to resume, 1 to run (1 more outside --only and --seeds)" in capsys.readouterr().out
    assert run(tmp_path, path, "--seeds", "2") == 2
    err = capsys.readouterr().err
    assert "--seeds 2: " in err and "its seeds are 0, 1." in err


def test_only_data_runs_the_cells_of_the_named_data_entries(tmp_path, fake_fit, capsys):
    path = small_config(tmp_path, data=["synthetic", {"label": "small", "args": ["--data.num_patients", 40]}])
    assert run(tmp_path, path, "--only-data", "small", "--seeds", "0") == 0
    calls = fake_fit()
    assert len(calls) == 2 and all("--data.num_patients" in call for call in calls)
    assert "2 to run (6 more outside --only-data and --seeds)" in capsys.readouterr().out
    assert run(tmp_path, path, "--only-data", "inbreast") == 2
    assert "--only-data inbreast: no data entry" in capsys.readouterr().err
