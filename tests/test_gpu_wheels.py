"""The wheels prepared for the GPU machine: which packages, which versions, which files.

benchmarks/gpu_wheels.py pins deepaas's requirements and its test runner to
the versions of the venv running the suite, then downloads them; these tests
cover everything but the download (no network here): the closure, computed
against this very venv and against small made-up installations, the
manifest, and the pruning of wheels that must not reach the install.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import canonicalize_name

from benchmarks import gpu_wheels
from benchmarks.gpu_wheels import Pin, Target, WheelsError

CP312 = Target((3, 12), gpu_wheels.manylinux_platforms("2.28"))
CP311 = Target((3, 11), gpu_wheels.manylinux_platforms("2.28"))


def _closure_of_this_venv() -> tuple[dict[str, Pin], list[str]]:
    pins, skipped = gpu_wheels.resolve_closure(gpu_wheels._roots([]), CP312)
    return {p.name: p for p in pins}, skipped


def test_the_closure_of_this_venv_holds_deepaas_and_its_test_runner():
    pins, skipped = _closure_of_this_venv()
    for name in (
        "aiohttp",
        "multidict",
        "yarl",
        "marshmallow",
        "webargs",
        "apispec",
        "stevedore",
        "oslo-config",
        "oslo-i18n",
        "netaddr",
        "rfc3986",
        "pbr",
        "swagger-ui-bundle",
        "prometheus-client",
        "tqdm",
        "pytest",
        "pluggy",
        "pytest-asyncio",
        "pytest-aiohttp",
    ):
        assert name in pins, name
    assert "numpy" not in pins and "torch" not in pins
    assert skipped == ["numpy"]
    assert pins["aiohttp"].reason == "deepaas requires"
    assert pins["oslo-i18n"].reason == "deepaas requires (through oslo-config)"
    assert pins["pytest-asyncio"].reason == "test runner"


def test_every_pin_is_the_version_installed_here():
    pins, _ = _closure_of_this_venv()
    for pin in pins.values():
        assert pin.version == importlib.metadata.version(pin.name), pin


def test_check_passes_in_this_venv_and_includes_numpy(capsys):
    assert gpu_wheels.check() == 0
    out = capsys.readouterr().out
    assert f"numpy=={importlib.metadata.version('numpy')}" in out


def _dist(site: Path, name: str, version: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"]
    lines += [f"Requires-Dist: {r}\n" for r in requires]
    (info / "METADATA").write_text("".join(lines))


def _resolve(site: Path, target: Target, *roots: str, skip=()):
    requirements = [Requirement(r) for r in roots]
    pins, skipped = gpu_wheels.resolve_closure(
        [("asked", requirements)], target, skip=skip, path=[str(site)]
    )
    return [str(p) for p in pins], skipped


def test_markers_are_evaluated_for_the_target_and_extras_followed(tmp_path):
    _dist(
        tmp_path,
        "alpha",
        "1.0",
        "old-backport>=1; python_version < '3.12'",
        "gamma[fast]>=2",
        "docs-tool; extra == 'docs'",
        "windows-only; sys_platform == 'win32'",
    )
    _dist(tmp_path, "old-backport", "1.5")
    _dist(tmp_path, "gamma", "2.1", "fastlib; extra == 'fast'", "slowlib; extra == 'x'")
    _dist(tmp_path, "fastlib", "0.3")
    assert _resolve(tmp_path, CP312, "alpha") == (
        ["alpha==1.0", "gamma==2.1", "fastlib==0.3"],
        [],
    )
    assert _resolve(tmp_path, CP311, "alpha")[0] == [
        "alpha==1.0",
        "old-backport==1.5",
        "gamma==2.1",
        "fastlib==0.3",
    ]


def test_an_extra_asked_later_still_brings_its_requirements(tmp_path):
    _dist(tmp_path, "gamma", "2.1", "fastlib; extra == 'fast'")
    _dist(tmp_path, "fastlib", "0.3")
    assert _resolve(tmp_path, CP312, "gamma", "gamma[fast]")[0] == [
        "gamma==2.1",
        "fastlib==0.3",
    ]


def test_skipped_packages_are_left_out_with_what_only_they_require(tmp_path):
    _dist(tmp_path, "alpha", "1.0", "nvidia-cublas", "bignum>=1")
    _dist(tmp_path, "bignum", "2.0", "bignum-helper")
    assert _resolve(tmp_path, CP312, "alpha", skip=("nvidia-*", "BigNum")) == (
        ["alpha==1.0"],
        ["nvidia-cublas", "bignum"],
    )


def test_every_missing_or_misfit_requirement_is_named_at_once(tmp_path):
    _dist(tmp_path, "alpha", "1.0", "beta>=2", "absent-one", "gamma")
    _dist(tmp_path, "beta", "1.4")
    _dist(tmp_path, "gamma", "1.0", "absent-one")
    with pytest.raises(WheelsError) as caught:
        _resolve(tmp_path, CP312, "alpha", "absent-two<3")
    message = str(caught.value)
    assert "beta>=2 (required by alpha): 1.4 is installed" in message
    assert "absent-one (required by alpha): not installed" in message
    assert "absent-one (required by gamma): not installed" in message
    assert "absent-two<3 (asked): not installed" in message


def test_the_manifest_lists_each_pin_and_why(tmp_path):
    pins = [
        Pin(canonicalize_name("aiohttp"), "3.14.5", "deepaas requires"),
        Pin(canonicalize_name("pytest"), "9.2.0", "test runner"),
    ]
    path = gpu_wheels.write_manifest(tmp_path, pins, CP312, ["numpy"])
    lines = path.read_text().splitlines()
    assert path.name == "MANIFEST.txt"
    assert "# CPython 3.12, x86-64 Linux, glibc <= 2.28." in lines
    assert "# Left out (the target has them): numpy" in lines
    assert [line for line in lines if not line.startswith("#")] == [
        "aiohttp==3.14.5  # deepaas requires",
        "pytest==9.2.0    # test runner",
    ]


def test_pruning_keeps_one_fitting_wheel_per_pin(tmp_path):
    names = [
        "aiohttp-3.14.5-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "aiohttp-3.14.5-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "aiohttp-3.14.4-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "aiohttp-3.14.5-cp312-cp312-musllinux_1_2_x86_64.whl",
        "pyyaml-6.0.4-cp312-cp312-manylinux_2_34_x86_64.whl",
        "pytest-9.2.0-py3-none-any.whl",
        "pytest-9.2.0-1-py3-none-any.whl",
        "unrelated-1.0-py3-none-any.whl",
        "not-a-wheel.whl",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "MANIFEST.txt").write_text("kept\n")
    pins = [
        Pin(canonicalize_name("aiohttp"), "3.14.5", "deepaas requires"),
        Pin(canonicalize_name("pytest"), "9.2.0", "test runner"),
        Pin(canonicalize_name("pyyaml"), "6.0.4", "deepaas requires"),
    ]
    removed = gpu_wheels.prune(tmp_path, pins, CP312)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [
        "MANIFEST.txt",
        names[0],
        "pytest-9.2.0-1-py3-none-any.whl",
    ]
    assert len(removed) == len(names) - 2
    # pyyaml's only wheel needs glibc 2.34: still to download.
    assert [str(p) for p in gpu_wheels.missing(tmp_path, pins, CP312)] == [
        "pyyaml==6.0.4"
    ]


def test_the_target_accepts_its_own_tags_only():
    tags = CP312.tags()
    assert Tag("cp312", "cp312", "manylinux_2_17_x86_64") in tags
    assert Tag("cp312", "abi3", "manylinux_2_28_x86_64") in tags
    assert Tag("py3", "none", "any") in tags
    assert Tag("cp311", "cp311", "manylinux_2_17_x86_64") not in tags
    assert Tag("cp312", "cp312", "manylinux_2_34_x86_64") not in tags


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--python-version", "3"], "--python-version must look like 3.12 (got '3')"),
        (["--python-version", "2.7"], "--python-version must be 3.10 or newer"),
        (["--glibc", "2.x"], "--glibc must look like 2.28 (got '2.x')"),
        (["--glibc", "2.12"], "--glibc must be 2.17 or newer (got '2.12')"),
        (["--also", "not a name!"], "--also 'not a name!' is not a requirement"),
    ],
)
def test_bad_options_are_refused_before_anything_is_fetched(
    tmp_path, capsys, argv, message
):
    assert gpu_wheels.main([*argv, "--dest", str(tmp_path / "w")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
