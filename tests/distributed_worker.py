"""Runs the BPTT engine under a real tf.distribute strategy, in its own process.

usage:
  python distributed_worker.py mirrored OUT.npz
      two logical CPU devices, MirroredStrategy; saves single-device and mirrored gradients
      and one-step weights for full BPTT and TBPTT.
  python distributed_worker.py multiworker OUT.npz CKPT_DIR     (with TF_CONFIG set)
      one worker of a MultiWorkerMirroredStrategy cluster: trains 2 epochs with checkpoints in
      the shared CKPT_DIR, then resumes a fresh model to 3 epochs from them; saves the weights
      after both and how many checkpoints this worker wrote.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "mirrored":
    # Logical devices must be configured before TensorFlow initialises its runtime.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

import bptt_keras as bk  # noqa: E402


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 12, 2)).astype("float32"), rng.normal(size=(8, 12, 1)).astype(
        "float32"
    )


def model():
    return bk.build_model("lstm", 5, input_dim=2, num_layers=2, seed=0)


def one_step(strategy, k1, k2, **kwargs):
    x, y = data()
    if strategy is None:
        m = model()
        opt = keras.optimizers.SGD(0.1)
    else:
        with strategy.scope():
            m = model()
            opt = keras.optimizers.SGD(0.1)
    kwargs.setdefault("epochs", 1)
    bk.fit(
        m,
        x,
        y,
        batch_size=8,
        k1=k1,
        k2=k2,
        optimizer=opt,
        shuffle=False,
        verbose=0,
        strategy=strategy,
        **kwargs,
    )
    return m.get_weights()


def mirrored():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    x, y = data()
    out = {}
    for tag, (k1, k2) in {"full": (None, None), "tbptt": (4, 7)}.items():
        _, single = bk.bptt_gradients(model(), x, y, k1=k1, k2=k2)
        with strategy.scope():
            mirrored_model = model()
        _, mirrored_grads = bk.bptt_gradients(mirrored_model, x, y, k1=k1, k2=k2, strategy=strategy)
        for i, (a, b) in enumerate(zip(single, mirrored_grads, strict=True)):
            out[f"{tag}_grad_single_{i}"], out[f"{tag}_grad_mirrored_{i}"] = a, b
        for i, (a, b) in enumerate(
            zip(one_step(None, k1, k2), one_step(strategy, k1, k2), strict=True)
        ):
            out[f"{tag}_weights_single_{i}"], out[f"{tag}_weights_mirrored_{i}"] = a, b
    # A tf.data.Dataset under the strategy: batches of 6 rows, the last one of 2 padded with
    # rows of weight 0 so that it splits over the replicas; equals arrays on one device.
    single = model()
    bk.fit(
        single, x, y, batch_size=6, k1=4, k2=7, optimizer=keras.optimizers.SGD(0.1),
        shuffle=False, verbose=0,
    )  # fmt: skip
    with strategy.scope():
        streamed = model()
        optimizer = keras.optimizers.SGD(0.1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    bk.fit(streamed, dataset, k1=4, k2=7, optimizer=optimizer, verbose=0, strategy=strategy)
    for i, (a, b) in enumerate(zip(single.get_weights(), streamed.get_weights(), strict=True)):
        out[f"dataset_weights_single_{i}"], out[f"dataset_weights_mirrored_{i}"] = a, b
    try:  # a global batch that cannot be split over 2 replicas is refused up front
        bk.fit(mirrored_model, x[:6], y[:6], batch_size=3, strategy=strategy, verbose=0)
    except ValueError as err:
        out["bad_batch_error"] = np.array(str(err))
    np.savez(OUT, **out)


def multiworker():
    import bptt_keras.engine.resume as resume

    writes = []
    real_save = resume.save_checkpoint
    resume.save_checkpoint = lambda *a, **k: writes.append(real_save(*a, **k))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    assert strategy.num_replicas_in_sync == 2
    ckpt = sys.argv[3]
    first = one_step(strategy, 4, 7, epochs=2, checkpoint_dir=ckpt)

    @tf.function
    def barrier():  # an all-reduce: the chief has written its last checkpoint before it
        return strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)

    barrier()
    resumed = one_step(strategy, 4, 7, epochs=3, checkpoint_dir=ckpt, resume=True)
    out = {f"first_{i}": w for i, w in enumerate(first)}
    out |= {f"resumed_{i}": w for i, w in enumerate(resumed)}
    np.savez(OUT, writes=len(writes), **out)


if __name__ == "__main__":
    {"mirrored": mirrored, "multiworker": multiworker}[MODE]()
