"""A broken compiled dependency reads as one line naming the package, the error and the fix."""

import os
import subprocess
import sys

from tests.conftest import REPO

LINKER_ERROR = "libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace"


def run_with_broken_torchaudio(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `asr ARGS` with a torchaudio that fails to load as a build for another torch does."""
    broken = tmp_path / "broken" / "torchaudio"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "__init__.py").write_text(f"raise OSError({LINKER_ERROR!r})\n")
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(broken.parent), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "asr.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=REPO)


def assert_named_with_its_fix(result: subprocess.CompletedProcess, prefix: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{prefix}: error: BrokenEnvironmentError: torchaudio does not load")
    assert LINKER_ERROR in lines[0]
    assert "pip install -c constraints.txt --force-reinstall 'torchaudio==" in lines[0]
    assert result.stdout == ""


def test_a_torchaudio_that_does_not_load_is_named_with_its_fix(tmp_path):
    clip = str(REPO / "audio_samples" / "spk1_snt1.flac")
    assert_named_with_its_fix(run_with_broken_torchaudio(tmp_path, "transcribe", clip, "--runtime", "torch"), "asr")
    # The default runtime (ONNX Runtime) needs torch only to build a bundled model's graphs, the
    # first time: then, with no graphs built yet (an empty cache), it names the problem as well.
    empty_cache = {"ASR_CACHE_DIR": str(tmp_path / "cache")}
    assert_named_with_its_fix(run_with_broken_torchaudio(tmp_path, "transcribe", clip, env=empty_cache),
                              "asr transcribe")


def test_help_loads_no_compiled_library_so_it_works_even_then(tmp_path):
    """Help is there to be read when something is broken; it loads neither torch nor torchaudio."""
    result = run_with_broken_torchaudio(tmp_path, "train", "--help")
    assert result.returncode == 0 and "usage: asr train" in result.stdout and result.stderr == ""
