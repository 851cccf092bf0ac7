"""The Python examples of docs/api.md and of the README's "In Python" block run, in order, as a user would type them."""

from __future__ import annotations

import re

from tests.conftest import REPO

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(text: str) -> list[str]:
    return _BLOCK.findall(text)


def readme_in_python_block() -> str:
    """The first python block after the README's "In Python:" line."""
    readme = (REPO / "README.md").read_text()
    return python_blocks(readme[readme.index("In Python:") :])[0]


def run_blocks(blocks: list[str], where: str, namespace: dict) -> None:
    for number, code in enumerate(blocks, 1):
        # The file name in tracebacks says which example failed.
        exec(compile(code, f"{where}, python block {number}", "exec"), namespace)


def test_api_examples_then_the_readme_example_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks((REPO / "docs" / "api.md").read_text())
    assert len(blocks) >= 6, "docs/api.md: models, data, training, prediction, networks, metrics"
    run_blocks(blocks, "docs/api.md", {"__name__": "__main__"})
    # The README's example loads the checkpoint and the files the docs/api.md examples wrote (it says so).
    run_blocks([readme_in_python_block()], "README.md 'In Python'", {"__name__": "__main__"})
    printed = capsys.readouterr().out
    assert (
        "score" in printed and (tmp_path / "cam_over_the_file.png").is_file() and (tmp_path / "metrics.json").is_file()
    )
