"""The README's Python examples run as written (in a scratch folder)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_blocks_run(code, data_dir, tmp_path, monkeypatch):
    # a scratch folder as the working directory, so MINIBERT_DATA (relative in CI) must be absolute
    monkeypatch.setenv("MINIBERT_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)


def test_readme_has_python_blocks():
    assert BLOCKS, "README.md should show how to use the library"
