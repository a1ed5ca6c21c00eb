"""Start-up: the command answers --help/--version/--list without TensorFlow, `python -m
bptt_keras` is the same command, TensorFlow's C++ start-up lines never reach a CLI user, and
importing the library leaves the environment alone."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bptt_keras.cli import main

PROBE = r"""
import os, sys
before = dict(os.environ)
import bptt_keras as bk
from bptt_keras.cli import main
for argv in (["--help"], ["--version"], ["train", "--help"], ["forecast", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
main(["reproduce", "--list"])
print("TF_AFTER_CLI", "tensorflow" in sys.modules, "keras" in sys.modules)
print("ENV_UNCHANGED_BY_IMPORT", dict(os.environ) == before)
import keras, tensorflow  # TensorFlow sets variables of its own (TF2_BEHAVIOR, ...)
with_tf = dict(os.environ)
for name in bk.__all__:  # every public name, so every module, imported
    getattr(bk, name)
print("ENV_UNCHANGED_BY_PACKAGE", dict(os.environ) == with_tf)
"""


def _env():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "PYTHONUNBUFFERED": "1"}


def test_help_version_and_list_do_not_import_tensorflow_and_import_changes_no_environment():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "TF_AFTER_CLI False False" in out
    assert "ENV_UNCHANGED_BY_IMPORT True" in out
    assert "ENV_UNCHANGED_BY_PACKAGE True" in out


def test_python_dash_m_is_the_console_script():
    beside = Path(sys.executable).parent / "bptt-keras"
    via_m = subprocess.run(
        [sys.executable, "-m", "bptt_keras", "--version"], capture_output=True, text=True
    )
    script = subprocess.run([str(beside), "--version"], capture_output=True, text=True)
    assert via_m.returncode == script.returncode == 0
    assert via_m.stdout == script.stdout == f"bptt-keras {__import__('bptt_keras').__version__}\n"
    listing = subprocess.run(
        [sys.executable, "-m", "bptt_keras", "reproduce", "--list"], capture_output=True, text=True
    )
    assert listing.returncode == 0 and listing.stdout.startswith("gradients")


def test_tensorflow_start_up_lines_do_not_reach_a_cli_user(tmp_path):
    """A real command in a fresh process with no TF_CPP_MIN_LOG_LEVEL set: TensorFlow's C++
    lines (absl's 'All log messages before absl::InitializeLog()', 'I0000 ... cudart_stub')
    would be printed by its import; the command prints only its own output."""
    done = subprocess.run(
        [sys.executable, "-m", "bptt_keras", "forecast", str(tmp_path), "--steps", "2"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert done.returncode == 2  # an empty directory is not a run: it fails after the import
    assert done.stderr.splitlines() == [
        f"bptt-keras: error: {str(tmp_path)!r} is not a complete run directory: missing "
        "model.keras, scaler.json, config.json, metrics.json (runs saved before scaler.json "
        "existed cannot be reloaded in original units)."
    ]


def test_package_names_resolve_to_functions_not_modules():
    import bptt_keras as bk
    import bptt_keras.prediction  # noqa: F401  (a submodule import must not shadow a name)
    import bptt_keras.run  # noqa: F401

    assert callable(bk.forecast) and bk.forecast.__module__ == "bptt_keras.prediction"
    assert bk.train.__module__ == "bptt_keras.run"
    assert set(bk.__all__) <= set(dir(bk))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bk.nope  # noqa: B018


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
