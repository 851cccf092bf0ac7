"""Registry consistency for every key a library model is registered under (DESIGN §6): folder = key, the model YAML
spells out the constructor defaults, a docs page and a README row exist, and `bilatcf list` shows exactly the listed
models."""

from __future__ import annotations

import inspect

import pytest
import yaml

from bilatcf.cli import COMMANDS, main
from bilatcf.registry import get_model_class, list_models
from tests.conftest import REPO

#: Every model of the library (hidden ones too); the harness models of tests/ are not the library's.
LIBRARY_MODELS = [n for n in list_models(include_hidden=True) if get_model_class(n).__module__.startswith("bilatcf.")]


def constructor_defaults(cls: type) -> dict:
    parameters = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def _plain(value):
    """YAML lists for tuples, so defaults compare with what the YAML holds."""
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("name", LIBRARY_MODELS)
def test_folder_is_the_registry_key(name):
    module = get_model_class(name).__module__
    assert module == f"bilatcf.models.{name}.module", f"{name} lives in {module}"
    assert (REPO / "bilatcf" / "models" / name / "network.py").is_file(), f"{name} has no network.py"


@pytest.mark.parametrize("name", LIBRARY_MODELS)
def test_model_yaml_equals_the_constructor_defaults(name):
    cls = get_model_class(name)
    path = REPO / "configs" / "models" / f"{name}.yaml"
    assert path.is_file(), f"missing {path.relative_to(REPO)}"
    model = yaml.safe_load(path.read_text())["model"]
    assert model["class_path"] in (f"{cls.__module__}.{cls.__qualname__}", f"bilatcf.models.{name}.{cls.__qualname__}")
    defaults = {k: _plain(v) for k, v in constructor_defaults(cls).items()}
    assert model["init_args"] == defaults, f"{path.relative_to(REPO)} differs from {cls.__qualname__}'s defaults"


@pytest.mark.parametrize("name", LIBRARY_MODELS)
def test_docs_page_and_readme_row_exist(name):
    assert (REPO / "docs" / "models" / f"{name}.md").is_file(), f"missing docs/models/{name}.md"
    assert f"| `{name}` |" in (REPO / "README.md").read_text(), f"README's model table has no row for {name}"


def test_list_shows_the_listed_models_only(capsys):
    assert main(["list"]) == 0
    printed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert printed == set(list_models())
    assert "_template" in list_models(include_hidden=True) and "_template" not in printed


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_listed_command_resolves(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage" in capsys.readouterr().out.lower()
