"""
How C{make matrix} reads its legs from C{pyproject.toml}, finds each leg's
Python, and passes saying what it skipped where a Python is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from twisted.trial.unittest import SynchronousTestCase

from ..matrix.legs import (
    ROOT,
    TEST_EXTRA,
    constraintsText,
    declaredPythons,
    findPython,
    floors,
    planLegs,
    readProject,
)
from ..servers import temporaryDirectory

CLASSIFIER = "Programming Language :: Python :: "


def project(*pythons: str, requires: str) -> dict[str, Any]:
    classifiers = [f"{CLASSIFIER}3", f"{CLASSIFIER}3 :: Only"]
    classifiers += [f"{CLASSIFIER}{python}" for python in pythons]
    return {"classifiers": classifiers, "requires-python": requires}


class FloorsTests(SynchronousTestCase):
    """
    The lowest leg installs every dependency at its C{>=} floor, and refuses
    a dependency whose floor it could not tell.
    """

    def test_eachDependencyIsPinnedAtItsFloorWithoutItsExtras(self) -> None:
        """
        C{twisted[tls]>=26.4} is pinned as C{twisted==26.4}: pip's
        constraints carry no extras; names are canonical.
        """
        pins = floors(["twisted[tls]>=26.4", "zope.interface>=6.0"])
        self.assertEqual(constraintsText(pins), "twisted==26.4\nzope-interface==6.0\n")

    def test_environmentMarkerKeepsTheFloor(self) -> None:
        """
        A dependency for some Pythons only is pinned at its floor too.
        """
        self.assertEqual(floors(["tomli>=2.0; python_version < '3.11'"]), {"tomli": "2.0"})

    def test_packageListedTwiceIsPinnedAtTheHigherFloor(self) -> None:
        """
        A package both the project and its tests need is installed at the
        higher floor, the lowest release that satisfies both.
        """
        self.assertEqual(
            floors(["cryptography>=45.0.7", "cryptography>=41"]), {"cryptography": "45.0.7"}
        )

    def test_requirementWithoutAFloorIsRefusedByName(self) -> None:
        """
        Without a C{>=} floor (only a cap, or nothing) the lowest leg could
        not say what it tested: an error naming the requirement.
        """
        for requirement in ("attrs", "attrs<24"):
            error = self.assertRaises(ValueError, floors, [requirement])
            self.assertIn(f"{requirement!r} needs one floor (>=X)", str(error))


class DeclaredPythonsTests(SynchronousTestCase):
    """
    The classifiers name the legs' Pythons, and must agree with
    C{requires-python}.
    """

    def test_oldestAndNewestClassifierAreTheLegsPythons(self) -> None:
        """
        The oldest and newest by version, not by spelling (3.9 before 3.10).
        """
        declared = project("3.10", "3.9", "3.12", requires=">=3.9")
        self.assertEqual(declaredPythons(declared), ("3.9", "3.12"))

    def test_requiresPythonThatDisagreesIsRefused(self) -> None:
        """
        A C{requires-python} floor other than the oldest classifier is an
        error that names both.
        """
        error = self.assertRaises(
            ValueError, declaredPythons, project("3.11", "3.13", requires=">=3.10")
        )
        self.assertIn("'>=3.10' but the oldest Python classifier is 3.11", str(error))

    def test_noVersionClassifierIsRefused(self) -> None:
        """
        Without a C{3.X} classifier there is no Python to test on.
        """
        self.assertRaises(ValueError, declaredPythons, project(requires=">=3.10"))

    def test_shippedProjectPinsEveryDependencyOnItsOldestPython(self) -> None:
        """
        The project's own declarations make a lowest leg on
        C{requires-python}'s floor that pins every dependency and test
        dependency, and a newest leg on a newer Python that pins nothing.
        """
        declared = readProject()
        lowest, newest = planLegs(declared)
        requirements = [*declared["dependencies"], *declared["optional-dependencies"][TEST_EXTRA]]
        names = {canonicalize_name(Requirement(text).name) for text in requirements}
        self.assertEqual(set(lowest.pins), names)
        self.assertEqual(f">={lowest.python}", declared["requires-python"])
        self.assertTrue(lowest.twistedSuite)
        self.assertEqual(newest.pins, {})
        self.assertNotEqual(newest.python, lowest.python)


class FindPythonTests(SynchronousTestCase):
    """
    A leg's Python is C{pythonX.Y} on C{PATH} or under pyenv's versions,
    whichever first runs and is that version.
    """

    def setUp(self) -> None:
        self.root = temporaryDirectory(self)
        self.path = self.root / "bin"
        self.pyenv = self.root / "pyenv"
        self.path.mkdir()

    def fakePython(self, where: Path, says: str, status: int = 0) -> Path:
        """
        A C{python3.10} in C{where} that prints C{says} as its version.
        """
        where.mkdir(parents=True, exist_ok=True)
        python = where / "python3.10"
        python.write_text(f"#!/bin/sh\necho {says}\nexit {status}\n", encoding="utf-8")
        python.chmod(0o755)
        return python

    def find(self, version: str = "3.10") -> Path | None:
        return findPython(version, str(self.path), self.pyenv)

    def test_failingShimOnThePathIsPassedOverForPyenvsInstall(self) -> None:
        """
        pyenv's shim for a version that is not selected is on the path but
        fails; the install under pyenv's versions is taken instead.
        """
        self.fakePython(self.path, "3.10", status=127)
        installed = self.fakePython(self.pyenv / "versions" / "3.10.13" / "bin", "3.10")
        self.assertEqual(self.find(), installed)

    def test_workingPythonOnThePathComesFirst(self) -> None:
        """
        A working C{python3.10} on the path is taken before pyenv's.
        """
        onPath = self.fakePython(self.path, "3.10")
        self.fakePython(self.pyenv / "versions" / "3.10.13" / "bin", "3.10")
        self.assertEqual(self.find(), onPath)

    def test_newestPatchReleaseIsTaken(self) -> None:
        """
        Of 3.10.9 and 3.10.13 under pyenv, 3.10.13 (by number, not spelling).
        """
        self.fakePython(self.pyenv / "versions" / "3.10.9" / "bin", "3.10")
        newer = self.fakePython(self.pyenv / "versions" / "3.10.13" / "bin", "3.10")
        self.assertEqual(self.find(), newer)

    def test_interpreterOfAnotherVersionIsNotTaken(self) -> None:
        """
        A C{python3.10} that turns out to be another Python is no 3.10.
        """
        self.fakePython(self.path, "3.11")
        self.assertIsNone(self.find())

    def test_nothingInstalledFindsNothing(self) -> None:
        """
        Neither on the path nor under pyenv: no Python for the leg.
        """
        self.assertIsNone(self.find())


class MissingPythonTests(SynchronousTestCase):
    """
    Where a leg's Python is not installed, C{make matrix} says what it
    skipped and still passes.
    """

    def test_legsWithoutTheirPythonAreSkippedAndTheMatrixPasses(self) -> None:
        """
        With no Python to be found, each leg is one line naming the leg and
        the missing interpreter, nothing is installed, and the status is 0.
        """
        empty = temporaryDirectory(self)
        work = empty / "work"
        environment = dict(os.environ, PATH=str(empty), PYENV_ROOT=str(empty))
        finished = subprocess.run(
            [sys.executable, "-m", "tests.matrix", "--workdir", str(work)],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.assertEqual(finished.returncode, 0, finished.stdout + finished.stderr)
        lines = finished.stdout.splitlines()
        for leg in planLegs(readProject()):
            skipped = [line for line in lines if line.startswith(f"matrix: skipped {leg.name} ")]
            self.assertEqual(len(skipped), 1, lines)
            self.assertIn(f"no working python{leg.python} on PATH", skipped[0])
        self.assertEqual(list(work.iterdir()), [])
