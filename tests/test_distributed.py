"""The engine under real tf.distribute strategies: results equal single-device training."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import bptt_keras as bk

WORKER = Path(__file__).with_name("distributed_worker.py")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpu_devices_matches_single_device(tmp_path):
    out = tmp_path / "mirrored.npz"
    done = subprocess.run(
        [sys.executable, str(WORKER), "mirrored", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = np.load(out)
    assert "batch_size=3" in str(data["bad_batch_error"]) and "2 replicas" in str(
        data["bad_batch_error"]
    )
    compared = [(t, k) for t in ("full", "tbptt") for k in ("grad", "weights")]
    compared.append(("dataset", "weights"))  # a tf.data.Dataset under the strategy vs arrays
    for tag, kind in compared:
        keys = sorted(k for k in data.files if k.startswith(f"{tag}_{kind}_single_"))
        assert len(keys) == 8  # 2 LSTM layers x (kernel, recurrent, bias) + dense (w, b)
        for key in keys:
            np.testing.assert_allclose(
                data[key.replace("_single_", "_mirrored_")], data[key], rtol=1e-5, atol=1e-7
            )


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_on_two_local_processes_matches_single_device(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    "multiworker",
                    str(tmp_path / f"w{index}.npz"),
                    str(tmp_path / "ckpt"),
                ],  # fmt: skip
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    # The single-device reference, computed here: 2 epochs, then (as if resumed) 3.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 12, 2)).astype("float32")
    y = rng.normal(size=(8, 12, 1)).astype("float32")
    expected = {}
    for epochs in (2, 3):
        model = bk.build_model("lstm", 5, input_dim=2, num_layers=2, seed=0)
        bk.fit(
            model, x, y, batch_size=8, k1=4, k2=7, epochs=epochs,
            optimizer=keras.optimizers.SGD(0.1), shuffle=False, verbose=0,
        )  # fmt: skip
        expected[epochs] = model.get_weights()
    results = [np.load(tmp_path / f"w{index}.npz") for index in range(2)]
    # Only the chief (worker 0) writes checkpoints: one per epoch end (2, then 1 resumed).
    assert [int(r["writes"]) for r in results] == [3, 0]
    for got in results:  # every worker resumed from the chief's files
        for tag, epochs in (("first", 2), ("resumed", 3)):
            for i, weight in enumerate(expected[epochs]):
                np.testing.assert_allclose(got[f"{tag}_{i}"], weight, rtol=1e-5, atol=1e-7)
