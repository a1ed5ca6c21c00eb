"""A training run for the fault tests, executed in a subprocess that the tests kill.

usage: python checkpoint_worker.py RUN_DIR [--slow SECONDS]

Trains a small GRU with TBPTT on noisy sines, checkpointing every batch into RUN_DIR/ckpt and
resuming from there if a checkpoint exists. Every batch appends "epoch step loss" to
RUN_DIR/steps.log; the end writes RUN_DIR/final.npz (weights) and RUN_DIR/history.json.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bptt_keras as bk  # noqa: E402
from bptt_keras.tasks import noisy_sines  # noqa: E402


class StepLog(keras.callbacks.Callback):
    def __init__(self, path, slow):
        super().__init__()
        self.path, self.slow, self.epoch = path, slow, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, step, logs=None):
        with open(self.path, "a") as handle:
            handle.write(f"{self.epoch} {step} {logs['loss']!r}\n")
            handle.flush()
        time.sleep(self.slow)


def main():
    run = Path(sys.argv[1])
    slow = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--slow" else 0.0
    run.mkdir(parents=True, exist_ok=True)
    x, y = bk.next_step_pairs(noisy_sines(48, 25, seed=0))
    model = bk.build_model("gru", 8, seed=0)
    try:
        history = bk.fit(
            model,
            x,
            y,
            epochs=3,
            batch_size=8,
            k1=6,
            k2=10,
            global_clipnorm=1.0,
            seed=0,
            optimizer=keras.optimizers.Adam(0.01),
            checkpoint_dir=run / "ckpt",
            checkpoint_every=1,
            resume=True,
            verbose=0,
            callbacks=[StepLog(run / "steps.log", slow)],
        )
    except KeyboardInterrupt as err:
        print(f"interrupted: {err}", flush=True)
        sys.exit(130)
    np.savez(run / "final.npz", *model.get_weights())
    (run / "history.json").write_text(json.dumps(history.history))


if __name__ == "__main__":
    main()
