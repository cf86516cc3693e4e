"""The built-in demo model's metadata points to nothing outside this project.

A link to DEEPaaS 2.x's package page (another project, of the same name)
would send a user to the wrong documentation, so the demo carries no URL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

CLI = str(Path(sys.executable).parent / "deepaas-cli")


@pytest.mark.slow
def test_the_demo_metadata_links_nowhere_else(tmp_path: Path) -> None:
    proc = subprocess.run(
        [CLI, "--model-name", "deepaas-demo", "get_metadata"],
        env=subprocess_env(DEEPAAS_DEMO_DIR=str(tmp_path / "demo")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    metadata = json.loads(proc.stdout)
    assert metadata["name"] == "deepaas-demo"
    assert "url" not in metadata and "home-page" not in metadata
    assert "http" not in proc.stdout and "pypi" not in proc.stdout
