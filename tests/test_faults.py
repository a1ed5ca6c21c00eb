"""Faults lose nothing: checkpoints survive SIGKILL and Ctrl-C, and resumed runs continue
exactly as if never interrupted."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import bptt_keras as bk
from bptt_keras.checkpoint import latest_checkpoint, load_checkpoint
from bptt_keras.tasks import noisy_sines

WORKER = Path(__file__).with_name("checkpoint_worker.py")


def _run_worker(run, *extra, wait=True):
    cmd = [sys.executable, str(WORKER), str(run), *extra]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _steps(run):
    lines = (run / "steps.log").read_text().splitlines() if (run / "steps.log").exists() else []
    return [tuple(line.split()) for line in lines]


def _wait_for_steps(run, count, proc, limit=120):
    start = time.time()
    while len(_steps(run)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < limit, "worker made no progress"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the worker."""
    run = tmp_path_factory.mktemp("reference")
    done = _run_worker(run)
    assert done.returncode == 0, done.stderr[-2000:]
    return run


def _assert_same_run(run, reference):
    ref_steps = {s[:2]: s[2] for s in _steps(reference)}
    assert len(ref_steps) == 18  # 3 epochs x 6 batches
    for epoch, step, loss in _steps(run):  # every batch the resumed run logged...
        assert ref_steps[(epoch, step)] == loss  # ...has exactly the uninterrupted loss
    assert json.loads((run / "history.json").read_text()) == json.loads(
        (reference / "history.json").read_text()
    )
    final, ref_final = np.load(run / "final.npz"), np.load(reference / "final.npz")
    for key in ref_final.files:
        np.testing.assert_array_equal(final[key], ref_final[key])


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_gives_the_same_losses(tmp_path, reference):
    run = tmp_path / "run"
    proc = _run_worker(run, "--slow", "0.2", wait=False)
    _wait_for_steps(run, 8, proc)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = len(_steps(run))
    assert 8 <= killed_at < 18
    resumed = _run_worker(run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(run, reference)
    # The resumed run redid at most the batch in flight at the kill, not the whole run.
    assert len(_steps(run)) <= 18 + 2


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path, reference):
    run = tmp_path / "run"
    proc = _run_worker(run, "--slow", "0.2", wait=False)
    _wait_for_steps(run, 4, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: Training interrupted at epoch" in out
    assert "Checkpoint written" in out
    assert "Traceback" not in err
    meta = load_checkpoint(latest_checkpoint(run / "ckpt"))["meta"]
    assert meta["batches_done"] == len(_steps(run))  # the checkpoint is the last batch logged
    resumed = _run_worker(run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(run, reference)


def _small_fit(model, x, y, ckpt, epochs, **kwargs):
    return bk.fit(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=8,
        k1=5,
        seed=1,
        verbose=0,
        optimizer=keras.optimizers.Adam(0.01),
        checkpoint_dir=ckpt,
        **kwargs,
    )


def test_resume_in_process_continues_the_history_exactly(tmp_path):
    x, y = bk.next_step_pairs(noisy_sines(32, 16, seed=0))
    full = _small_fit(bk.build_model("lstm", 4, seed=0), x, y, tmp_path / "a", epochs=4)
    _small_fit(bk.build_model("lstm", 4, seed=0), x, y, tmp_path / "b", epochs=2)
    resumed_model = bk.build_model("lstm", 4, seed=0)
    resumed = _small_fit(resumed_model, x, y, tmp_path / "b", epochs=4, resume=True)
    assert resumed.history == full.history
    assert resumed.epoch == [0, 1, 2, 3]


def test_checkpoints_are_pruned_and_hold_finite_weights(tmp_path):
    x, y = bk.next_step_pairs(noisy_sines(32, 16, seed=0))
    _small_fit(bk.build_model("gru", 4, seed=0), x, y, tmp_path, epochs=3, checkpoint_every=1)
    files = sorted(tmp_path.glob("ckpt-*.npz"))
    assert len(files) == 2 and files[-1].name == "ckpt-000000012.npz"  # 3 epochs x 4 batches
    assert not list(tmp_path.glob(".ckpt-*"))  # no temporary files left behind
    ckpt = load_checkpoint(files[-1])
    assert ckpt["meta"]["epoch"] == 3 and ckpt["meta"]["step"] == 0
    assert all(np.all(np.isfinite(w)) for w in ckpt["weights"])


def test_non_finite_loss_leaves_existing_checkpoints_untouched(tmp_path):
    x, y = bk.next_step_pairs(noisy_sines(24, 11, seed=0))
    _small_fit(bk.build_model("simple_rnn", 3, seed=0), x, y, tmp_path, epochs=1)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("ckpt-*.npz")}
    y_bad = y.copy()
    y_bad[:] = 3e38
    with pytest.warns(RuntimeWarning, match="Non-finite"):
        _small_fit(
            bk.build_model("simple_rnn", 3, seed=0), x, y_bad, tmp_path, epochs=2, resume=True
        )
    after = {p.name: p.read_bytes() for p in tmp_path.glob("ckpt-*.npz")}
    assert after == before


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, damage):
    x, y = bk.next_step_pairs(noisy_sines(16, 11, seed=0))
    _small_fit(bk.build_model("simple_rnn", 3, seed=0), x, y, tmp_path, epochs=1)
    path = latest_checkpoint(tmp_path)
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a zip" * 10, "empty": b""}[damage]
    )
    with pytest.raises(bk.CheckpointError, match="corrupt or truncated") as info:
        _small_fit(bk.build_model("simple_rnn", 3, seed=0), x, y, tmp_path, epochs=2, resume=True)
    assert path.name in str(info.value)


def test_checkpoint_from_other_settings_is_refused(tmp_path):
    x, y = bk.next_step_pairs(noisy_sines(16, 11, seed=0))
    _small_fit(bk.build_model("simple_rnn", 3, seed=0), x, y, tmp_path, epochs=1)
    with pytest.raises(bk.CheckpointError, match="other data or settings"):
        bk.fit(
            bk.build_model("simple_rnn", 3, seed=0),
            x,
            y,
            epochs=2,
            batch_size=4,
            checkpoint_dir=tmp_path,
            resume=True,
            verbose=0,
        )
