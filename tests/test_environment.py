"""A broken compiled dependency reads as one line naming the package, the error and the fix."""

import os
import subprocess
import sys

from tests.conftest import REPO

LINKER_ERROR = "libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace"


def run_with_broken_torchaudio(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """Runs `asr ARGS` with a torchaudio that fails to load as a build for another torch does."""
    broken = tmp_path / "broken" / "torchaudio"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(f"raise OSError({LINKER_ERROR!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken.parent), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "asr.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=REPO)


def test_a_torchaudio_that_does_not_load_is_named_with_its_fix(tmp_path):
    result = run_with_broken_torchaudio(tmp_path, "transcribe", str(REPO / "audio_samples" / "spk1_snt1.flac"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asr: error: BrokenEnvironmentError: torchaudio does not load")
    assert LINKER_ERROR in lines[0]
    assert "pip install -c constraints.txt --force-reinstall 'torchaudio==" in lines[0]
    assert result.stdout == ""


def test_help_loads_no_compiled_library_so_it_works_even_then(tmp_path):
    """Help is there to be read when something is broken; it loads neither torch nor torchaudio."""
    result = run_with_broken_torchaudio(tmp_path, "train", "--help")
    assert result.returncode == 0 and "usage: asr train" in result.stdout and result.stderr == ""
