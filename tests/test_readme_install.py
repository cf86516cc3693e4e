"""The README's model package installs next to this deepaas, never DEEPaaS 2.x.

PyPI's ``deepaas`` is DEEPaaS 2.x: a model that lists plain ``deepaas``
gets DEEPaaS 2.6.0 in a fresh environment.  Whatever the README tells a
model author to declare must keep this deepaas and refuse 2.x.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import deepaas
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_block(language: str, marker: str) -> str:
    """The README's fenced ``language`` block that contains ``marker``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README, re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def deepaas_requirements() -> list[Requirement]:
    """Every requirement on deepaas the README shows a model author."""
    (listed,) = re.findall(r"^dependencies = \[(.*)\]$",
                           readme_block("toml", "[project]"), re.M)
    written = re.findall(r'"([^"]+)"', listed)
    written += re.findall(r'declares\s+`"(deepaas[^"`]*)"`', README)
    return [r for r in map(Requirement, written) if r.name == "deepaas"]


def test_a_declared_deepaas_keeps_this_one_and_refuses_deepaas_2():
    requirements = deepaas_requirements()
    assert requirements, "the README says how to declare deepaas"
    for requirement in requirements:
        assert requirement.specifier.contains(deepaas.__version__), requirement
        assert not requirement.specifier.contains("2.6.0", prereleases=True), (
            f"{requirement} lets pip install DEEPaaS 2.6.0 from PyPI")


@pytest.mark.slow
def test_the_readme_model_installs_without_fetching_deepaas(tmp_path: Path):
    package = tmp_path / "my-model"
    (package / "my_model").mkdir(parents=True)
    (package / "my_model" / "__init__.py").write_text("")
    (package / "my_model" / "api.py").write_text(
        readme_block("python", "def predict("))
    pyproject = readme_block("toml", "[project]")
    for requirement in ([], *([str(r)] for r in deepaas_requirements())):
        extra = "".join(f', "{r}"' for r in requirement)
        (package / "pyproject.toml").write_text(
            pyproject.replace('dependencies = ["webargs"',
                              f'dependencies = ["webargs"{extra}'))
        # Offline: everything it needs must already be here, this deepaas too.
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
             "--no-build-isolation", "--quiet", "--report", "-", str(package)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert done.returncode == 0, done.stderr
        assert '"name": "my-model"' in done.stdout
        assert '"name": "deepaas"' not in done.stdout
