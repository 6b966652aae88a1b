"""constraints.txt, the lock of the tested environment, covers what pyproject.toml asks for."""

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

# Built against torch's C++ ABI: any other release than the one torch was built with fails to load.
BUILT_AGAINST_TORCH = ("torch", "torchaudio")


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [req for name in ("dev", "bench", "demo", "serve") for req in project["optional-dependencies"][name]]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_requirement_is_locked_at_a_version_it_allows():
    pins = locked_versions()
    for requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (str(requirement), pins[name])


def test_packages_built_against_torch_are_pinned_exactly_to_the_locked_release():
    pins = locked_versions()
    declared = {canonicalize_name(r.name): r for r in project_requirements()}
    for name in BUILT_AGAINST_TORCH:
        assert str(declared[name].specifier) == f"=={pins[name]}", declared[name]
    assert pins["torch"] == pins["torchaudio"]  # torchaudio X.Y.Z is built for torch X.Y.Z
