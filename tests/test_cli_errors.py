"""What the command says when something is wrong (one paragraph, exit status 2), and what it does not say."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
import yaml

from bilatcf.cli import COMMANDS, _build_cli_class, _quiet_third_party, main
from tests.conftest import TINY_CONFIG

TINY_SBF = ["--config", str(TINY_CONFIG), "--model", "sbf", "--model.backbone", "test_resnet"]


def error_of(capsys, args: list[str]) -> str:
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith("bilatcf: error:")]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_help_lists_every_command_with_its_whole_description(capsys):
    assert main(["--help"]) == 0
    printed = capsys.readouterr().out
    for name, description in COMMANDS.items():
        assert f"  {name}" in printed and description in printed
    assert list(COMMANDS) == ["fit", "validate", "test", "predict", "list", "data", "benchmark", "explain"]


@pytest.mark.parametrize("command", ["fitt", "explian", "tset"])
def test_an_unknown_command_lists_the_valid_ones(capsys, command):
    err = error_of(capsys, [command, "--model", "sbf"])
    assert f"unknown command '{command}'" in err
    assert "fit, validate, test, predict, list, data, benchmark, explain" in err


def test_a_near_miss_command_is_suggested(capsys):
    assert "Did you mean 'fit'?" in error_of(capsys, ["fitt"])


@pytest.mark.parametrize(
    ("config", "key", "suggestion"),
    [
        ({"trainer": {"max_epoch": 3}}, "trainer.max_epoch", "trainer.max_epochs"),
        ({"model": {"init_args": {"lrr": 0.1}}}, "model.init_args.lrr", "model.init_args.lr"),
        (
            {"model": {"class_path": "bilatcf.models.cgn.CGN", "init_args": {"tripplet": "none"}}},
            "model.init_args.tripplet",
            "model.init_args.triplet",
        ),
        ({"data": {"init_args": {"num_patient": 10}}}, "data.init_args.num_patient", "data.init_args.num_patients"),
        ({"trainers": {"max_epochs": 3}}, "trainers", "trainer"),
    ],
)
def test_a_misspelled_config_key_names_the_file_the_key_and_the_nearest_valid_one(
    tmp_path, capsys, config, key, suggestion
):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    err = error_of(capsys, ["fit", "--model", "sbf", "--config", str(path)])
    assert f"{path}: unknown key '{key}'" in err and f"did you mean '{suggestion}'" in err


@pytest.mark.parametrize(
    ("option", "suggestion"),
    [(["--trainer.max_epochz", "3"], "--trainer.max_epochs"), (["--model.lrr", "0.1"], "--model.lr")],
)
def test_a_misspelled_option_suggests_the_nearest_valid_one(capsys, option, suggestion):
    err = error_of(capsys, ["fit", "--model", "sbf", *option])
    assert f"unknown option {option[0]}" in err and f"did you mean '{suggestion}'" in err


def test_a_missing_model_says_how_to_give_one(capsys):
    assert "no model given: pass --model NAME" in error_of(capsys, ["fit"])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--trainer.max_epochs", "-5"], "--trainer.max_epochs -5 is not valid"),
        (["--trainer.max_steps", "-3"], "--trainer.max_steps -3 is not valid"),
        (["--trainer.limit_train_batches", "1.5"], "--trainer.limit_train_batches 1.5 is not valid"),
        (["--trainer.limit_val_batches", "-1"], "--trainer.limit_val_batches -1 is not valid"),
        (["--trainer.log_every_n_steps", "0"], "--trainer.log_every_n_steps 0 is not valid"),
        (["--trainer.max_epochs", "abc"], "invalid value for --trainer.max_epochs: expected an int; got abc"),
        (["--trainer.precision", "bad"], "invalid value for --trainer.precision"),
        (["--trainer.devices", "0"], "invalid trainer options: `Trainer(devices='0')`"),
        (["--trainer.strategy", "nosuch"], "invalid trainer options: You selected an invalid strategy name"),
    ],
)
def test_bad_trainer_options_are_one_paragraph_naming_the_option(tmp_path, capsys, option, expected):
    err = error_of(capsys, ["fit", *TINY_SBF, "--trainer.default_root_dir", str(tmp_path), *option])
    assert expected in err


def test_an_unwritable_run_directory_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    err = error_of(capsys, ["fit", *TINY_SBF, "--trainer.default_root_dir", str(blocker / "runs")])
    assert f"cannot write the run directory (--trainer.default_root_dir) {blocker / 'runs'}" in err


def test_an_unwritable_cache_directory_is_a_clear_error(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("BILATCF_CACHE", str(blocker / "cache"))
    err = error_of(capsys, ["fit", *TINY_SBF, "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert f"cannot write the cache folder ($BILATCF_CACHE) {blocker / 'cache'}" in err and "BILATCF_CACHE" in err


@pytest.mark.parametrize(
    "spelling", [["--model", "cgn"], ["--model=cgn"], ["--model", "CGN"], ["--model", "bilatcf.models.cgn.CGN"]]
)
def test_model_names_class_names_and_class_paths_are_accepted(capsys, spelling):
    capsys.readouterr()
    assert main(["fit", *spelling, "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["model"]["class_path"].endswith(".CGN")


def test_third_party_noise_is_hidden_and_the_metrics_table_printed_once(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bilatcf", "fit"])  # as from the console script (LightningCLI warns then)
    assert main(["fit", *TINY_SBF, "--trainer.default_root_dir", str(tmp_path)]) == 0
    out, err = capfd.readouterr()
    for noise in ("args parameter is intended", "GPU available", "TPU available", "litlogger", "many workers"):
        assert noise not in out + err, noise
    assert "Test metric" not in out + err  # Lightning's own table
    assert sum(line.startswith("test/auc ") for line in out.splitlines()) == 1


def test_the_noise_filter_keeps_real_warnings_and_log_lines():
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with _quiet_third_party():
                warnings.warn(
                    "LightningCLI's args parameter is intended to run from within Python like …",
                    UserWarning,
                    stacklevel=1,
                )
                warnings.warn(
                    "The 'train_dataloader' does not have many workers which may be a bottleneck.", stacklevel=1
                )
                warnings.warn("a real warning", UserWarning, stacklevel=1)
                logger.warning("GPU available: False, used: False")
                logger.warning("Restoring states from the checkpoint path at x.ckpt")
    finally:
        logger.removeHandler(handler)
    assert [str(w.message) for w in seen] == ["a real warning"]
    assert [r.getMessage() for r in records] == ["Restoring states from the checkpoint path at x.ckpt"]


DDP_FORMS = {
    "ddp": ["--trainer.strategy", "ddp"],
    "ddp_spawn": ["--trainer.strategy", "ddp_spawn"],
    "ddp_find_unused_parameters_false": ["--trainer.strategy", "ddp_find_unused_parameters_false"],
    "ddp_spawn_find_unused_parameters_false": ["--trainer.strategy", "ddp_spawn_find_unused_parameters_false"],
    "class_path": [
        "--trainer.strategy",
        '{"class_path": "pytorch_lightning.strategies.DDPStrategy",'
        ' "init_args": {"find_unused_parameters": false, "start_method": "spawn"}}',
    ],
    "yaml": "yaml",
    "auto": ["--trainer.strategy", "auto"],
}
START_METHODS = {"ddp_spawn": "spawn", "ddp_spawn_find_unused_parameters_false": "spawn", "class_path": "spawn"}


def resolved_strategy(tmp_path, model: str, form: str):
    option = DDP_FORMS[form]
    if option == "yaml":
        path = tmp_path / "ddp.yaml"
        strategy = {
            "class_path": "pytorch_lightning.strategies.DDPStrategy",
            "init_args": {"find_unused_parameters": False},
        }
        path.write_text(yaml.safe_dump({"trainer": {"strategy": strategy}}))
        option = ["--config", str(path)]
    cli_class, _ = _build_cli_class()
    args = ["--model", model, "--model.backbone", "test_resnet", *option]
    args += ["--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path)]
    return cli_class(args=args, run=False).trainer.strategy


@pytest.mark.parametrize("form", list(DDP_FORMS))
def test_ddp_finds_unused_parameters_for_manual_optimization_however_the_strategy_is_given(tmp_path, form):
    from pytorch_lightning.strategies import DDPStrategy

    strategy = resolved_strategy(tmp_path, "cgn", form)
    assert isinstance(strategy, DDPStrategy)
    assert strategy._ddp_kwargs["find_unused_parameters"] is True
    assert strategy._start_method == START_METHODS.get(form, "popen")


def test_ddp_keeps_the_given_setting_for_automatic_optimization(tmp_path):
    strategy = resolved_strategy(tmp_path, "sbf", "ddp_find_unused_parameters_false")
    assert strategy._ddp_kwargs["find_unused_parameters"] is False


def test_a_file_system_error_elsewhere_is_one_line_too(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    err = error_of(capsys, ["data", "synth", "--out", str(blocker / "synth"), "--num_patients", "2"])
    assert str(blocker) in err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--model", "sbf", "--data.batch_size", "0"], "--data.batch_size = 0 is out of range"),
        (["--model", "cgn", "--model.alpha", "2"], "model.alpha=2.0 must lie in [0, 1]"),
    ],
)
def test_an_error_raised_while_building_model_or_data_is_one_paragraph(tmp_path, capsys, options, expected):
    # jsonargparse wraps these in its own ValueError; the user sees bilatcf's message alone.
    assert main(["fit", *options, "--trainer.default_root_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "Union subtypes" not in err
