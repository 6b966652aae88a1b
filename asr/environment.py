"""Checks that the compiled libraries `asr` runs on import, before anything else touches them.

A torchaudio built against another torch release fails at import with a linker message
(`undefined symbol: ...`) deep inside its package; users should instead read which package is
broken and the one command that installs the versions this package was tested with.
"""

from __future__ import annotations

import importlib
import re

from asr.errors import AsrError

# Imported in this order: torchaudio's extension can only load once torch's has.
COMPILED_DEPENDENCIES = ("numpy", "torch", "torchaudio", "soundfile")
ONNX_DEPENDENCIES = ("numpy", "onnxruntime", "soundfile")  # `asr transcribe --runtime onnx`


class BrokenEnvironmentError(AsrError):
    """A compiled dependency is missing or does not load; names the package and the fix."""


def pinned_requirement(package: str) -> str:
    """The requirement this installation of `asr` declares for `package` (e.g. "torchaudio==2.11.0")."""
    from importlib import metadata  # here, not at the top: only a broken install reads it, start-up would pay

    try:
        requirements = metadata.requires("asr") or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        requirements = []
    for requirement in requirements:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        if name.lower() == package.lower() and "extra ==" not in requirement:
            return requirement.split(";")[0].replace(" ", "")
    return package


def check_compiled_dependencies(packages: tuple[str, ...] = COMPILED_DEPENDENCIES) -> None:
    """Imports each package; the first that fails raises BrokenEnvironmentError with its fix."""
    for package in packages:
        try:
            importlib.import_module(package)
        except Exception as err:  # ImportError, or OSError from a shared library that does not load
            detail = " ".join(str(err).split())
            raise BrokenEnvironmentError(
                f"{package} does not load ({type(err).__name__}: {detail}); fix: "
                f"pip install -c constraints.txt --force-reinstall '{pinned_requirement(package)}' "
                f"(run in the asr source folder; README, 'Set up', lists the supported torch builds)"
            ) from None
