"""Python 3.8 (JetPack 5) compatibility, checked statically since no 3.8 runs here."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent


def test_package_and_tests_need_no_python_newer_than_3_8():
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    require_tool(vermin, "vermin (pip install vermin)")
    result = subprocess.run(
        [vermin, "-t=3.8-", "--no-tips", "--violations", "--backport", "dataclasses",
         "tegrastats_api", "tests", "bench"],
        cwd=str(ROOT), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_postpones_annotations():
    for path in sorted((ROOT / "tegrastats_api").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name == "__main__.py" or "def " not in text:
            continue
        assert "from __future__ import annotations" in text, path.name
