"""The documentation site builds: ``mkdocs build --strict`` fails on a broken link, a missing anchor, a page left out
of the navigation or a missing included leaderboard (mkdocs.yml, ``validation`` and ``pymdownx.snippets``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

MISSING = [name for name in ("mkdocs", "material") if importlib.util.find_spec(name) is None]


@pytest.mark.skipif(
    bool(MISSING), reason="mkdocs-material is not installed: `pip install -e '.[docs]'` (or make install)"
)
def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (site / "index.html").is_file()
    leaderboards = (site / "leaderboards.html").read_text()
    assert 'id="leaderboard-cgn_table1"' in leaderboards  # the committed table is included, not linked
