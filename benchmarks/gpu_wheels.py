"""Prepare the wheels that the GPU check carries to a machine without network.

The GPU check runs deepaas from this source tree on a machine that has
torch, numpy and CUDA but reaches no package index.  What deepaas needs
there (its ``install_requires``) and what runs its tests (pytest,
pytest-asyncio, pytest-aiohttp) travel as wheels and are installed with
``pip install --no-index --no-deps --target SITE``; ``SITE`` goes on
``PYTHONPATH`` ahead of the machine's own packages, so a carried package
wins over the machine's copy of it.

Every package is pinned to the version installed in the Python running this
script (the project's venv, where the suite passes), and the requirements
are followed recursively with their environment markers evaluated for the
target (CPython ``--python-version`` on x86-64 Linux).  Only what is large
and already on the target in a compatible version is left out (numpy,
torch and torch's CUDA stack; see ``DEFAULT_SKIP``): carrying a small
package that the target also has costs a few kB and removes a version
question.

    .venv/bin/python benchmarks/gpu_wheels.py                 # .whl/, cp312
    .venv/bin/python benchmarks/gpu_wheels.py --python-version 3.11 \\
        --dest /tmp/whl311                                    # local rehearsal

Then, on the target (``.whl`` named in what travels):

    python3 -m pip install -q --no-index --no-deps --no-compile \\
        --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
    export PYTHONPATH="$REPO:$SITE:$PYTHONPATH"

The folder ends up holding exactly one wheel per pinned package (older or
other-platform wheels are removed: two versions of one package make the
install fail) and ``MANIFEST.txt``, which says why each one is there.
"""

from __future__ import annotations

import argparse
import configparser
import fnmatch
import importlib.metadata
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent

#: What runs the GPU tests: pytest with the asyncio mode the project's
#: configuration sets (pytest-asyncio) and the aiohttp fixtures.
TEST_RUNNER = ("pytest", "pytest-asyncio", "pytest-aiohttp")

#: Large packages the GPU machine already has in a version deepaas accepts
#: (numpy 2.x there; deepaas asks numpy>=1.24).  Patterns, as for --skip.
DEFAULT_SKIP = ("numpy", "torch", "triton", "nvidia-*", "cuda-*")

#: The newest glibc the wheels may ask for by default: every current Linux
#: distribution has at least 2.28, and the packages here publish wheels for
#: it or older.
DEFAULT_GLIBC = "2.28"

#: What may travel to the machine in all (the device tool's limit).
TRAVEL_LIMIT = 64 * 1024 * 1024
#: From here on, a warning: little room is left for anything else.
TRAVEL_WARNING = 56 * 1024 * 1024

MANIFEST = "MANIFEST.txt"


class WheelsError(Exception):
    """A requirement that cannot be pinned or downloaded; the message says why."""


@dataclass(frozen=True)
class Pin:
    """One package to carry: its installed version and why it travels."""

    name: NormalizedName
    version: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Target:
    """The interpreter and platforms the wheels are for."""

    python_version: tuple[int, int]
    platforms: tuple[str, ...]

    @property
    def interpreter(self) -> str:
        major, minor = self.python_version
        return f"cp{major}{minor}"

    def markers(self) -> dict[str, str]:
        """The environment markers of CPython at that version on x86-64 Linux."""
        major, minor = self.python_version
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{major}.{minor}.0",
            "os_name": "posix",
            "platform_machine": "x86_64",
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{major}.{minor}.0",
            "python_version": f"{major}.{minor}",
            "sys_platform": "linux",
            "extra": "",
        }

    def tags(self) -> frozenset[Tag]:
        """Every wheel tag that pip on the target accepts."""
        abi = [self.interpreter]
        found = set(cpython_tags(self.python_version, abi, self.platforms))
        found |= set(
            compatible_tags(self.python_version, self.interpreter, self.platforms)
        )
        return frozenset(found)


def parse_python_version(text: str) -> tuple[int, int]:
    """``"3.12"`` -> ``(3, 12)``; anything else is refused with the reason."""
    parts = text.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise WheelsError(f"--python-version must look like 3.12 (got {text!r})")
    major, minor = int(parts[0]), int(parts[1])
    if major != 3 or minor < 10:
        raise WheelsError(f"--python-version must be 3.10 or newer (got {text!r})")
    return major, minor


def manylinux_platforms(glibc: str) -> tuple[str, ...]:
    """The x86-64 manylinux platform tags for a glibc up to ``glibc``."""
    parts = glibc.split(".")
    if len(parts) != 2 or parts[0] != "2" or not parts[1].isdigit():
        raise WheelsError(f"--glibc must look like 2.28 (got {glibc!r})")
    newest = int(parts[1])
    if newest < 17:
        raise WheelsError(f"--glibc must be 2.17 or newer (got {glibc!r})")
    # pip matches each platform tag exactly: every glibc up to the newest.
    modern = [f"manylinux_2_{n}_x86_64" for n in range(newest, 4, -1)]
    legacy = ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    return (*modern, *legacy)


def deepaas_requirements(setup_cfg: Path = ROOT / "setup.cfg") -> list[Requirement]:
    """deepaas's ``install_requires``, as the source tree that travels declares it."""
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",))
    if not parser.read(setup_cfg):
        raise WheelsError(f"cannot read {setup_cfg}")
    text = parser.get("options", "install_requires", fallback="")
    requirements = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirements.append(Requirement(line))
        except InvalidRequirement as exc:
            raise WheelsError(f"{setup_cfg}: bad requirement {line!r}: {exc}") from exc
    if not requirements:
        raise WheelsError(f"{setup_cfg} declares no [options] install_requires")
    return requirements


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a package name matches one of the --skip patterns."""
    canonical = canonicalize_name(name)
    return any(fnmatch.fnmatchcase(canonical, canonicalize_name(p)) for p in patterns)


def _installed(
    name: str, path: Sequence[str] | None
) -> importlib.metadata.Distribution | None:
    found = importlib.metadata.distributions(
        name=name, path=list(sys.path if path is None else path)
    )
    return next(iter(found), None)


def resolve_closure(
    roots: Sequence[tuple[str, Sequence[Requirement]]],
    target: Target,
    *,
    skip: Iterable[str] = DEFAULT_SKIP,
    path: Sequence[str] | None = None,
) -> tuple[list[Pin], list[str]]:
    """Pin ``roots`` and what they require, recursively, to the installed versions.

    ``roots`` are groups of requirements, each with the reason it travels
    ("deepaas requires"); a package gets the reason of the first group that
    reaches it.  Markers are evaluated for ``target``; extras asked for
    (``pyjwt[crypto]``) bring their requirements.  Distributions are looked
    up on ``path`` (``sys.path`` by default), the first one found winning, as
    for an import.  Returns the pins, in the order found, and the names left
    out by ``skip``; raises WheelsError listing every requirement that is not
    installed or not in a fitting version.
    """
    skip = tuple(skip)
    environment = target.markers()
    pins: dict[NormalizedName, Pin] = {}
    skipped: list[str] = []
    problems: list[str] = []
    absent: set[NormalizedName] = set()
    visited: set[tuple[NormalizedName, str]] = set()
    for reason, requirements in roots:
        queue: deque[tuple[Requirement, str]] = deque((r, reason) for r in requirements)
        while queue:
            requirement, wanted_by = queue.popleft()
            name = canonicalize_name(requirement.name)
            if matches(name, skip):
                if name not in skipped:
                    skipped.append(name)
                continue
            if name in absent:
                problems.append(
                    _problem(requirement, wanted_by, reason, "not installed")
                )
                continue
            extras = ["", *sorted(requirement.extras)]
            if all((name, extra) in visited for extra in extras):
                problems += _misfit(requirement, pins[name], wanted_by, reason)
                continue
            distribution = _installed(requirement.name, path)
            if distribution is None:
                absent.add(name)
                problems.append(
                    _problem(requirement, wanted_by, reason, "not installed")
                )
                continue
            if name not in pins:
                why = (
                    reason if wanted_by == reason else f"{reason} (through {wanted_by})"
                )
                pins[name] = Pin(name, distribution.version, why)
            problems += _misfit(requirement, pins[name], wanted_by, reason)
            for extra in extras:
                if (name, extra) in visited:
                    continue
                visited.add((name, extra))
                for line in distribution.requires or []:
                    needed = Requirement(line)
                    if needed.marker is None:
                        # An extra's requirements always carry a marker.
                        if extra == "":
                            queue.append((needed, name))
                    elif needed.marker.evaluate({**environment, "extra": extra}):
                        queue.append((needed, name))
    if problems:
        raise WheelsError(
            f"in this Python ({sys.executable}):\n  " + "\n  ".join(problems)
        )
    return list(pins.values()), skipped


def _misfit(
    requirement: Requirement, pin: Pin, wanted_by: str, reason: str
) -> list[str]:
    if requirement.specifier.contains(pin.version, prereleases=True):
        return []
    return [_problem(requirement, wanted_by, reason, f"{pin.version} is installed")]


def _problem(requirement: Requirement, wanted_by: str, reason: str, what: str) -> str:
    origin = reason if wanted_by == reason else f"required by {wanted_by}"
    return f"{requirement} ({origin}): {what}"


def _wheel_key(path: Path) -> tuple[NormalizedName, Version, frozenset[Tag]] | None:
    try:
        name, version, _build, tags = parse_wheel_filename(path.name)
    except (InvalidWheelFilename, InvalidVersion):
        return None
    return name, version, tags


def _fits(path: Path, pins: Sequence[Pin], target_tags: frozenset[Tag]) -> bool:
    key = _wheel_key(path)
    if key is None:
        return False
    name, version, tags = key
    wanted = {p.name: Version(p.version) for p in pins}
    return wanted.get(name) == version and bool(tags & target_tags)


def prune(dest: Path, pins: Sequence[Pin], target: Target) -> list[Path]:
    """Remove the wheels in ``dest`` that the install must not see.

    A wheel stays only if it is a pinned version and the target accepts its
    tags; of several that fit one package, the first by name stays (pip
    refuses two versions of one package, and would pick one of two builds
    arbitrarily).  Returns what was removed.
    """
    target_tags = target.tags()
    removed = []
    kept: set[NormalizedName] = set()
    for wheel in sorted(dest.glob("*.whl")):
        key = _wheel_key(wheel)
        if key is not None and _fits(wheel, pins, target_tags) and key[0] not in kept:
            kept.add(key[0])
            continue
        wheel.unlink()
        removed.append(wheel)
    return removed


def missing(dest: Path, pins: Sequence[Pin], target: Target) -> list[Pin]:
    """The pins that have no fitting wheel in ``dest`` yet."""
    target_tags = target.tags()
    present = {
        key[0]
        for wheel in dest.glob("*.whl")
        if (key := _wheel_key(wheel)) is not None and _fits(wheel, pins, target_tags)
    }
    return [p for p in pins if p.name not in present]


def download(pins: Sequence[Pin], dest: Path, target: Target) -> None:
    """Fetch one wheel per pin for ``target`` into ``dest`` with pip.

    Asks for all of them in one pip call; if that fails, asks one by one to
    name each pin that has no wheel for the target.
    """
    if not pins:
        return
    major, minor = target.python_version
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        f"{major}.{minor}",
        "--implementation",
        "cp",
        *(f"--platform={p}" for p in target.platforms),
        "-d",
        str(dest),
    ]
    done = subprocess.run(
        [*command, "-q", *map(str, pins)], capture_output=True, text=True
    )
    if done.returncode == 0:
        return
    failed = []
    for pin in pins:
        one = subprocess.run([*command, "-q", str(pin)], capture_output=True, text=True)
        if one.returncode != 0:
            last = (one.stderr.strip().splitlines() or ["pip failed"])[-1]
            failed.append(f"{pin}: {last}")
    if not failed:  # the batch failed for a reason the single calls did not see
        raise WheelsError(f"pip download failed:\n{done.stderr.strip()}")
    raise WheelsError(
        f"no {target.interpreter} wheel for x86-64 Linux (glibc <= "
        f"{_glibc(target)}) could be downloaded for:\n  " + "\n  ".join(failed)
    )


def _glibc(target: Target) -> str:
    return "2." + target.platforms[0].split("_")[2] if target.platforms else "?"


def write_manifest(
    dest: Path, pins: Sequence[Pin], target: Target, skipped: Sequence[str]
) -> Path:
    """Write ``MANIFEST.txt``: one ``name==version`` line per wheel, and why."""
    major, minor = target.python_version
    lines = [
        "# Wheels the GPU check installs with pip --no-index --no-deps --target:",
        f"# CPython {major}.{minor}, x86-64 Linux, glibc <= {_glibc(target)}.",
        "# Written by benchmarks/gpu_wheels.py; versions are those of the venv",
        "# where the test suite passes.",
    ]
    if skipped:
        lines.append(f"# Left out (the target has them): {', '.join(skipped)}")
    width = max((len(str(p)) for p in pins), default=0)
    lines += [f"{str(p):<{width}}  # {p.reason}" for p in pins]
    path = dest / MANIFEST
    path.write_text("\n".join(lines) + "\n")
    return path


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except FileNotFoundError:  # tracked but deleted in the working tree
        return 0


def tree_size(root: Path = ROOT) -> int:
    """Bytes of the working tree that travels: tracked and untracked-not-ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    names = {n for n in listed.decode().split("\0") if n}
    total = sum(_size(root / n) for n in names)
    shared = root / "shared"
    if shared.is_dir():  # travels too, ignored or not
        total += sum(_size(p) for p in shared.rglob("*") if p.is_file())
    return total


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"


def _report(dest: Path, pins: Sequence[Pin]) -> int:
    wheels = sorted(dest.glob("*.whl"))
    width = max((len(str(p)) for p in pins), default=0)
    by_name = {}
    for wheel in wheels:
        key = _wheel_key(wheel)
        if key is not None:
            by_name[key[0]] = wheel
    for pin in pins:
        wheel = by_name[pin.name]
        print(f"  {str(pin):<{width}}  {wheel.stat().st_size / 1024:8.0f} KiB")
    total = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {_mib(total)} in {dest}")
    return total


def _check_travel(dest: Path, wheels: int) -> None:
    tree = tree_size()
    inside = dest.resolve().is_relative_to(ROOT)
    total = tree + (wheels if inside else 0)
    where = "" if inside else f" (plus {dest}, outside the repo, if copied in)"
    print(
        f"travels: working tree {_mib(tree)} + wheels {_mib(wheels)} = "
        f"{_mib(total)} of {_mib(TRAVEL_LIMIT)}{where}"
    )
    if total > TRAVEL_LIMIT:
        print(
            "ERROR: more than the device tool carries; skip a package the "
            "target has (--skip) or remove untracked files",
            file=sys.stderr,
        )
    elif total > TRAVEL_WARNING:
        print(
            f"WARNING: less than {_mib(TRAVEL_LIMIT - total)} left under the "
            "limit for anything else that must travel",
            file=sys.stderr,
        )


def _parse_also(names: Sequence[str]) -> list[Requirement]:
    requirements = []
    for name in names:
        try:
            requirements.append(Requirement(name))
        except InvalidRequirement as exc:
            raise WheelsError(f"--also {name!r} is not a requirement: {exc}") from exc
    return requirements


def _roots(also: Sequence[str]) -> list[tuple[str, Sequence[Requirement]]]:
    roots: list[tuple[str, Sequence[Requirement]]] = [
        ("deepaas requires", deepaas_requirements()),
        ("test runner", [Requirement(n) for n in TEST_RUNNER]),
    ]
    if also:
        roots.append(("asked for (--also)", _parse_also(also)))
    return roots


def check(also: Sequence[str] = ()) -> int:
    """Check the requirements against what this Python imports; 0 when all fit."""
    here = Target(sys.version_info[:2], ())
    try:
        pins, _ = resolve_closure(_roots(also), here, skip=())
    except WheelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    found = ", ".join(map(str, pins))
    print(f"all {len(pins)} requirements are importable in fitting versions: {found}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Pin, download, prune and list the wheels; non-zero when one is missing."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="download nothing: check that this Python, as its PYTHONPATH is "
        "now, has every requirement in a fitting version (run it on the target "
        "after the install; numpy and the other left-out packages are checked "
        "too)",
    )
    parser.add_argument(
        "--python-version",
        default="3.12",
        help="CPython of the target (default 3.12, the GPU machine's)",
    )
    parser.add_argument(
        "--glibc",
        default=DEFAULT_GLIBC,
        help=f"newest glibc the wheels may need (default {DEFAULT_GLIBC})",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=ROOT / ".whl",
        help="folder of the wheels (default .whl at the repo root, git-ignored)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out a package the target has (a pattern such as 'nvidia-*'; "
        f"always left out: {', '.join(DEFAULT_SKIP)})",
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME",
        help="carry an installed package too, with what it requires",
    )
    args = parser.parse_args(argv)
    if args.check:
        return check(args.also)
    try:
        target = Target(
            parse_python_version(args.python_version),
            manylinux_platforms(args.glibc),
        )
        pins, skipped = resolve_closure(
            _roots(args.also), target, skip=(*DEFAULT_SKIP, *args.skip)
        )
        dest: Path = args.dest
        dest.mkdir(parents=True, exist_ok=True)
        for stale in prune(dest, pins, target):
            print(f"removed {stale.name}")
        download(missing(dest, pins, target), dest, target)
        prune(dest, pins, target)
        still = missing(dest, pins, target)
        if still:
            raise WheelsError(
                "pip reported success but no fitting wheel arrived for: "
                + ", ".join(map(str, still))
            )
    except WheelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if ": not installed" in str(exc):
            print("run this script with the project's venv", file=sys.stderr)
        return 1
    write_manifest(dest, pins, target, skipped)
    print(f"left out (the target has them): {', '.join(skipped) or 'nothing'}")
    _check_travel(dest, _report(dest, pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
