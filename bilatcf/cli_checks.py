"""Reading and checking what a user gives the ``bilatcf`` command: options in argv, ``--config`` files, checkpoint
names, trainer numbers and writable folders, each refused with one paragraph that names the option, file or key and
the fix (``docs/troubleshooting.md``). :mod:`bilatcf.cli` runs them around LightningCLI.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from bilatcf.errors import ConfigError


def option(args: list[str], name: str) -> str | None:
    """The value of ``name`` on a command line (``--name value`` or ``--name=value``; the last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def replace_option(args: list[str], name: str, value: str) -> list[str]:
    out = list(args)
    for i, arg in enumerate(out):
        if arg == name and i + 1 < len(out):
            out[i + 1] = value
        elif arg.startswith(name + "="):
            out[i] = f"{name}={value}"
    return out


def config_paths(args: list[str]) -> list[str]:
    paths = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            paths.append(args[i + 1])
        elif arg.startswith("--config="):
            paths.append(arg.split("=", 1)[1])
    return paths


def load_yaml(path: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the parser reports unreadable config files itself


def default_root_dir(args: list[str]) -> str:
    """``trainer.default_root_dir`` as the command line or its --config files set it (default ``runs``)."""
    value = option(args, "--trainer.default_root_dir")
    if value:
        return value
    root = "runs"
    for path in config_paths(args):
        config = load_yaml(path)
        trainer = config.get("trainer") if isinstance(config, dict) else None
        if isinstance(trainer, dict) and trainer.get("default_root_dir"):
            root = str(trainer["default_root_dir"])
    return root


def resolve_model_names(args: list[str]) -> list[str]:
    """``--model cgn`` → the registered class path.

    jsonargparse resolves class names of imported subclasses (``--model CGN``) and full class paths itself, but not the
    lowercase registry names, and has no way to register aliases; this is the only rewriting of the command line.
    """
    from bilatcf.registry import get_model_class

    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--model" and i + 1 < len(out):
            index, prefix = i + 1, ""
        elif arg.startswith("--model="):
            index, prefix = i, "--model="
        else:
            continue
        value = out[index][len(prefix) :]
        if value and "." not in value and not value.startswith(("{", "[")):
            cls = get_model_class(value)
            out[index] = f"{prefix}{cls.__module__}.{cls.__qualname__}"
    return out


def import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def given_model(class_path: str) -> str:
    cls = import_class(class_path)
    return getattr(cls, "model_name", None) or class_path


def checkpoint_model_name(path: str) -> str:
    """The registry name stored in a bilatcf checkpoint (a :class:`ConfigError` for any other file)."""
    from bilatcf.checkpoints import read_checkpoint

    return read_checkpoint(path).model_name


def as_dict(namespace: Any) -> dict[str, Any]:
    return namespace.as_dict() if hasattr(namespace, "as_dict") else dict(namespace)


# ------------------------------------------------------------------------------------------------------- config errors
def parser_keys(parser) -> set[str]:
    return {action.dest for action in parser._actions if not action.dest.endswith(".help")} - {"help"}


def class_keys(class_path: str | None) -> set[str] | None:
    """Init argument names of a class, or None when unknown (unresolvable, or it takes ``**kwargs``)."""
    if not class_path:
        return None
    try:
        cls = import_class(class_path)
    except (ImportError, AttributeError, ValueError):
        return None  # the parser reports a bad class path itself
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def suggest(key: str, valid: set[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


def check_config_files(args: list[str], parser, subcommand: str, checkpoint: Any) -> None:
    """Name the file, the key and the nearest valid key for a misspelled key in a --config file."""
    keys = parser_keys(parser)
    top = {key.split(".")[0] for key in keys}
    trainer_keys = {key[len("trainer.") :] for key in keys if key.startswith("trainer.")}
    class_paths = {
        "model": option(args, "--model") or (checkpoint.model_class_path if checkpoint is not None else None),
        "data": option(args, "--data") or "bilatcf.data.datamodule.BilateralDataModule",
    }
    for path in config_paths(args):
        config = load_yaml(path)
        if not isinstance(config, dict):
            continue
        problem = None
        for key in config:
            if key not in top:
                problem = (str(key), suggest(str(key), top))
                break
        trainer = config.get("trainer")
        if problem is None and isinstance(trainer, dict):
            for key in trainer:
                if key not in trainer_keys:
                    problem = (f"trainer.{key}", suggest(str(key), trainer_keys, "trainer."))
                    break
        for group in ("model", "data"):
            section = config.get(group)
            if problem is not None or not isinstance(section, dict):
                continue
            class_paths[group] = section.get("class_path") or class_paths[group]
            problem = check_init_args(group, section, class_paths[group])
        if problem is not None:
            key, suggestion = problem
            raise ConfigError(
                f"{path}: unknown key '{key}'{suggestion}. `bilatcf {subcommand} --help` lists every option "
                f"(and `bilatcf {subcommand} --model NAME --print_config` a complete config)."
            )


def check_init_args(group: str, section: dict, class_path: str | None) -> tuple[str, str] | None:
    valid = class_keys(class_path)
    if valid is None:
        return None
    init_args = section.get("init_args") or {}
    if isinstance(init_args, dict):
        for key in init_args:
            if key not in valid:
                return f"{group}.init_args.{key}", suggest(str(key), valid, f"{group}.init_args.")
    for key in section:
        if key not in valid | {"class_path", "init_args", "dict_kwargs"}:
            return f"{group}.{key}", suggest(str(key), valid | {"class_path", "init_args"}, f"{group}.")
    return None


def explain_parse_error(message: str, args: list[str], subcommand: str | None, parsers: dict[str, Any]) -> str:
    """One paragraph for a jsonargparse error, with the nearest valid option where one was misspelled."""
    help_hint = f"`bilatcf {subcommand} --help` lists every option." if subcommand else "`bilatcf --help` lists them."
    parser = parsers.get(subcommand) if subcommand else None
    options = {f"--{key}" for key in parser_keys(parser)} if parser is not None else set()
    if match := re.search(r"[Uu]nrecognized arguments: (\S+)", message):
        option = match.group(1).split("=")[0]
        return f"unknown option {option}{suggest(option, options)}. {help_hint}"
    if match := re.search(r"does not accept option '([^']+)'", message):
        option = "--" + match.group(1)
        return f"unknown option {option}{suggest(option, options)}. {help_hint}"
    if re.search(r"[Kk]ey '(?:\w+\.)?model' is required|arguments are required: (?:\w+\.)?model\b", message):
        return (
            "no model given: pass --model NAME (`bilatcf list` shows the names), a --config with a model section, "
            "or --ckpt_path."
        )
    if match := re.search(r"Problem with given class_path '([^']+)':\s*Option '([^']+)' is not accepted", message):
        class_path, option = match.groups()
        group = "model" if re.search(r'Parser key "model"', message) else "data"
        valid = class_keys(class_path) or set()
        return f"unknown option --{group}.{option} for {class_path}{suggest(option, valid, f'--{group}.')}. {help_hint}"
    if match := re.match(r'Parser key "([^"]+)":', message):
        return f"invalid value for --{match.group(1)}: {union_errors(message)} {help_hint}"
    return f"{one_line(message)} {help_hint}"


def union_errors(message: str) -> str:
    """The informative lines of a jsonargparse type error (not the Union bookkeeping, not the ``None`` alternative)."""
    skip = ("Does not validate", "Subtypes:", "Errors:", "Given value type:", "Given value: NestedArg")
    lines = [line.strip(" -") for line in message.splitlines()[1:]]
    kept = [line for line in lines if line and not line.startswith(skip) and "NoneType" not in line]
    text = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", "; ".join(kept))
    text = re.sub(r"Expected a typing\.Literal\[(.*?)\]", r"expected one of \1", text).replace(":;", ":")
    text = re.sub(r"Expected a (\w+)", lambda m: f"expected {'an' if m[1][0] in 'aeiou' else 'a'} {m[1]}", text)
    text = re.sub(r"Given value: (.*)$|Got value: (.*)$", lambda m: f"got {m[1] or m[2]}", text)
    if re.search(r"Expected a (?:<class ')?(?:tuple|list)\b", message):
        text += " (lists are written [a,b] on the command line, e.g. --data.image_size [128,64])"
    return text + "."


def one_line(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------------------- checks
_TRAINER_COUNTS = {
    # option: (smallest int allowed, what it means)
    "max_epochs": (-1, "a number of epochs, or -1 for no limit"),
    "max_steps": (-1, "a number of steps, or -1 for no limit"),
    "log_every_n_steps": (1, "a positive number of steps"),
    "check_val_every_n_epoch": (1, "a positive number of epochs"),
}
_TRAINER_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")


def check_trainer_numbers(trainer: Any) -> None:
    """Numeric trainer options, checked before any work with a message that names the option."""
    for key, (low, meaning) in _TRAINER_COUNTS.items():
        value = trainer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ConfigError(f"--trainer.{key} {value} is not valid: it must be {meaning} (an integer >= {low}).")
    for key in _TRAINER_LIMITS:
        value = trainer.get(key)
        if value is None or isinstance(value, bool):
            continue
        # As Lightning reads them: a fraction in [0, 1], or a whole number of batches (2 and 2.0 alike).
        if not (0.0 <= value <= 1.0 or (value > 1 and value % 1 == 0)):
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            raise ConfigError(
                f"--trainer.{key} {shown} is not valid: give a number of batches (an integer >= 0) or a fraction of "
                "the split (a float between 0.0 and 1.0)."
            )


def check_writable(folder: str | os.PathLike, what: str, fix: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot write {what} {folder}: {exc.strerror or exc}; {fix}.") from None


def check_cache() -> None:
    variable = os.environ.get("BILATCF_CACHE")
    folder = variable or Path.home() / ".cache" / "bilatcf"
    source = "the cache folder ($BILATCF_CACHE)" if variable else "the cache folder"
    check_writable(folder, source, "set BILATCF_CACHE to a writable folder")
