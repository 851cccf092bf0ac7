"""The Python API for research code: networks without Lightning, metrics as torchmetrics classes, and
``bilatcf.load`` predicting exactly what ``bilatcf predict`` writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

#: Every method folder with a pure-PyTorch ``network.py`` (DESIGN §1: networks never import Lightning).
NETWORK_MODULES = sorted(
    f"bilatcf.models.{p.parent.name}.network" for p in (REPO / "bilatcf" / "models").glob("*/network.py")
)
#: Modules research code imports that need no Lightning either.
LIGHT_MODULES = ["bilatcf", "bilatcf.metrics", "bilatcf.models", "bilatcf.nn"]

# Run in a fresh interpreter: a meta-path finder makes every Lightning import raise, naming the chain of modules that
# asked for it; each module of argv is imported in turn and the result printed as JSON (module -> error or null).
_WITHOUT_LIGHTNING = r"""
import importlib, importlib.abc, inspect, json, sys

BLOCKED = ("pytorch_lightning", "lightning", "lightning_fabric")

class NoLightning(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            chain = [f.frame.f_globals.get("__name__") for f in reversed(inspect.stack())
                     if f.function == "<module>" and f.frame.f_globals.get("__name__") != "__main__"]
            raise ImportError(" -> ".join([*chain, name]))
        return None

sys.meta_path.insert(0, NoLightning())
results = {}
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
        results[module] = None
    except ImportError as error:
        results[module] = str(error)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def imports_without_lightning() -> dict[str, str | None]:
    """Import every network (and the light modules) once, in one subprocess where Lightning cannot be imported.

    One interpreter for all modules is enough: with every Lightning import refused, a module imported earlier cannot
    hide a later module's path to Lightning (a failed import leaves nothing that would satisfy it).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    modules = [*NETWORK_MODULES, *LIGHT_MODULES]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LIGHTNING, *modules], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_method_folder_has_a_network():
    from bilatcf.models import METHODS

    assert sorted(METHODS) == sorted(module.split(".")[2] for module in NETWORK_MODULES)


@pytest.mark.parametrize("module", [*NETWORK_MODULES, *LIGHT_MODULES])
def test_imports_without_lightning(module, imports_without_lightning):
    error = imports_without_lightning[module]
    assert error is None, f"importing {module} imports Lightning: {error}"
