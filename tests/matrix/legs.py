"""
What C{make matrix} runs, read from C{pyproject.toml}: its legs, the floors
the lowest leg pins, and where each leg's Python is found.

The declarations are the only source: the Python classifiers name the oldest
and newest Python (the oldest must be C{requires-python}'s floor), and each
dependency's C{>=} floor is the release the lowest leg installs.  A floor
that changes is tested the next time the matrix runs; none can be claimed
without being tested.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent.parent
PYPROJECT = ROOT / "pyproject.toml"

#: The extra whose dependencies the suite needs, installed in every leg.
TEST_EXTRA = "test"

_CLASSIFIER = "Programming Language :: Python :: "

#: Seconds a leg's Python may take to say which version it is.
_PROBE_TIMEOUT = 30


@dataclass(frozen=True)
class Leg:
    """
    One run of the suite.

    @ivar name: What the report calls it.
    @ivar python: The Python version, C{"3.10"}.
    @ivar pins: Package name to the version the leg installs (its floor);
        empty for a leg that takes the newest releases.
    @ivar twistedSuite: Whether the leg also runs C{make twisted-suite}'s
        Twisted tests, whose modules change between Twisted releases.
    """

    name: str
    python: str
    pins: Mapping[str, str]
    twistedSuite: bool

    def describe(self) -> str:
        releases = "the lowest declared releases" if self.pins else "the newest releases"
        return f"{self.name} (Python {self.python}, {releases})"


def readProject(path: Path = PYPROJECT) -> dict[str, Any]:
    with path.open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def floors(requirements: Iterable[str]) -> dict[str, str]:
    """
    Each requirement's package (its canonical name) to its C{>=} floor; the
    same package twice is pinned at the higher of its floors.  Raises
    C{ValueError} naming a requirement without a floor: the lowest leg
    could not say which release it tested.
    """
    pinned: dict[str, str] = {}
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as e:
            raise ValueError(f"{text!r} is not a requirement: {e}") from e
        found = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(found) != 1:
            raise ValueError(
                f"{text!r} needs one floor (>=X) for the lowest leg to install and test"
            )
        name = canonicalize_name(requirement.name)
        floor = found[0]
        if name not in pinned or Version(floor) > Version(pinned[name]):
            pinned[name] = floor
    return pinned


def constraintsText(pins: Mapping[str, str]) -> str:
    """
    A pip constraints file that installs exactly C{pins}.  Constraints
    carry no extras: C{twisted[tls]} is pinned as C{twisted}.
    """
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def declaredPythons(project: Mapping[str, Any]) -> tuple[str, str]:
    """
    The oldest and newest Python the classifiers name.  Raises C{ValueError}
    if there are none, or if the oldest is not C{requires-python}'s floor:
    the two must tell users the same thing.
    """
    versions = sorted(
        (
            classifier.removeprefix(_CLASSIFIER)
            for classifier in project.get("classifiers", [])
            if classifier.startswith(_CLASSIFIER)
            and classifier.removeprefix(_CLASSIFIER).count(".") == 1
        ),
        key=Version,
    )
    if not versions:
        raise ValueError(f"no '{_CLASSIFIER}3.X' classifier says which Pythons are supported")
    oldest, newest = versions[0], versions[-1]
    required = SpecifierSet(project.get("requires-python", ""))
    floor = [spec.version for spec in required if spec.operator == ">="]
    if floor != [oldest]:
        raise ValueError(
            f"requires-python is {str(required)!r} but the oldest Python classifier is "
            f"{oldest}: make them agree"
        )
    return oldest, newest


def planLegs(project: Mapping[str, Any]) -> list[Leg]:
    """
    The lowest leg (oldest Python, every dependency and test dependency at
    its floor, with the Twisted tests) and the newest (newest Python, newest
    releases).
    """
    oldest, newest = declaredPythons(project)
    requirements = [
        *project["dependencies"],
        *project["optional-dependencies"][TEST_EXTRA],
    ]
    return [
        Leg("lowest", oldest, floors(requirements), twistedSuite=True),
        Leg("newest", newest, {}, twistedSuite=False),
    ]


def _patchKey(path: Path) -> tuple[int, ...]:
    release = path.parent.parent.name
    return tuple(int(part) if part.isdigit() else -1 for part in release.split("."))


def candidatePythons(version: str, searchPath: str, pyenvRoot: Path) -> list[Path]:
    """
    Where C{pythonX.Y} may be: on C{searchPath}, then in pyenv's versions,
    newest patch release first.
    """
    command = f"python{version}"
    onPath = [Path(folder) / command for folder in searchPath.split(os.pathsep) if folder]
    inPyenv = sorted(pyenvRoot.glob(f"versions/{version}.*/bin/{command}"), key=_patchKey)
    return [*onPath, *reversed(inPyenv)]


def runs(python: Path, version: str) -> bool:
    """
    Whether C{python} starts and is Python C{version}: a pyenv shim for a
    version that is not selected is on the path but fails.
    """
    if not os.access(python, os.X_OK):
        return False
    try:
        said = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return said.returncode == 0 and said.stdout.strip() == version


def findPython(version: str, searchPath: str, pyenvRoot: Path) -> Path | None:
    """
    The first candidate for C{version} that runs, or C{None}.
    """
    for candidate in candidatePythons(version, searchPath, pyenvRoot):
        if runs(candidate, version):
            return candidate
    return None


def defaultPyenvRoot(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def skippedLine(leg: Leg, pyenvRoot: Path) -> str:
    """
    The one line that says a leg did not run, and why.
    """
    return (
        f"matrix: skipped {leg.describe()}: no working python{leg.python} on PATH "
        f"or under {pyenvRoot}/versions"
    )
