"""Truncated BPTT with many updates per compiled call: same updates as one call per block,
compiled once, memory flat, long streams finish (issue: TBPTT 30-1000x slower than Keras)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import SignalAt

import bptt_keras as bk
from bptt_keras.checkpoint import latest_checkpoint, load_checkpoint
from bptt_keras.engine.epochs import block_shape, next_call
from bptt_keras.tasks import noisy_sines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(n=20, steps=13, seed=0):
    return bk.next_step_pairs(noisy_sines(n, steps + 1, seed=seed))


def _tbptt_run(cell, per_call, *, k1, k2=None, weighted=False, epochs=2, n=20, **kwargs):
    """TBPTT over 20 sequences of 13 steps in batches of 8 (the last batch partial)."""
    x, y = _rows(n=n)
    weights = None
    if weighted:
        weights = np.random.default_rng(0).uniform(0, 2, size=x.shape[:2]).astype("float32")
    model = bk.build_model(cell, 4, seed=0)
    optimizer = keras.optimizers.Adam(0.02)
    history = bk.fit(
        model, x, y, epochs=epochs, batch_size=8, k1=k1, k2=k2, seed=4, verbose=0,
        optimizer=optimizer, sample_weight=weights, steps_per_execution=per_call, **kwargs,
    )  # fmt: skip
    return model, optimizer, history


# --- the call plan ----------------------------------------------------------------------


def test_calls_share_one_block_shape_and_stop_at_marked_batches():
    blocks = bk.plan_blocks(10, 4, 4)  # shapes (4, 4), (4, 4), (2, 2)
    assert [block_shape(b) for b in blocks] == [(4, 4), (4, 4), (2, 2)]
    assert next_call(0, blocks=blocks, end=9, limit=8) == 2  # the short block ends it
    assert next_call(2, blocks=blocks, end=9, limit=8) == 1
    uniform = bk.plan_blocks(12, 4, 4)
    assert next_call(1, blocks=uniform, end=12, limit=100) == 11  # across batches, to the end
    assert next_call(1, blocks=uniform, end=12, limit=5) == 5
    assert next_call(1, blocks=uniform, end=12, limit=100, cut_before=lambda b: b == 2) == 5
    tbptt = bk.plan_blocks(30, 7, 11)  # look-back cut at 0 in block 0; a short last block
    assert [block_shape(b) for b in tbptt] == [(7, 7), (11, 7), (11, 7), (11, 7), (6, 2)]
    assert next_call(1, blocks=tbptt, end=10, limit=100) == 3


# --- the same updates as one call per block ----------------------------------------------


@pytest.mark.parametrize(
    "cell, k1, k2, weighted",
    [
        ("simple_rnn", 4, None, False),  # 13 = 4 + 4 + 4 + 1: a short last block
        ("lstm", 3, 7, True),  # TBPTT(k1 < k2): edge blocks of their own shapes
        ("gru", 2, None, False),  # the GRU's fast path (issue 15), BPTT(k) blocks
    ],
)
def test_updates_in_calls_of_several_are_bit_for_bit_one_call_per_block(cell, k1, k2, weighted):
    blocks = len(bk.plan_blocks(13, k1, k2 or k1))
    runs = {
        per_call: _tbptt_run(cell, per_call, k1=k1, k2=k2, weighted=weighted)
        for per_call in (1, None)
    }
    one_model, one_opt, one_hist = runs[1]
    assert int(one_opt.iterations.numpy()) == 2 * 3 * blocks  # 3 batches an epoch
    assert one_hist.compiled_calls == 2 * 3 * blocks  # one call per update
    model, optimizer, history = runs[None]  # automatic: calls of one block shape
    assert history.compiled_calls < one_hist.compiled_calls
    assert int(optimizer.iterations.numpy()) == 2 * 3 * blocks
    assert history.history == one_hist.history
    for a, b in zip(model.get_weights(), one_model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_truncated_epoch_of_whole_batches_is_one_call_and_one_trace():
    model, optimizer, history = _tbptt_run("simple_rnn", None, k1=1, n=16, epochs=1)
    assert int(optimizer.iterations.numpy()) == 2 * 13  # 2 batches x 13 one-step blocks
    assert history.compiled_calls == 1 and history.trace_count == 1


def test_stateful_stream_truncated_within_each_batch_in_calls_of_several():
    """A stateful model over the streams layout with 3 blocks per batch: calls spanning
    batches carry the final state into the next batch, as one call per block does, and both
    equal TBPTT over the long rows."""
    series = np.sin(np.arange(289) / 4.0) + 0.1 * np.random.default_rng(1).normal(size=289)
    xs, ys = bk.stream_batches(series, batch_size=4, seq_len=12)  # 6 batches of 4 rows

    def run(per_call):
        model = bk.build_model("lstm", 5, stateful=True, batch_size=4, seed=0)
        history = bk.fit(
            model, xs, ys, batch_size=4, k1=4, shuffle=False, verbose=0, epochs=2,
            optimizer=keras.optimizers.SGD(0.05), steps_per_execution=per_call,
        )  # fmt: skip
        return model, history

    (one, one_hist), (many, many_hist) = run(1), run(7)
    assert (one_hist.compiled_calls, many_hist.compiled_calls) == (36, 6)  # 18 updates, 7 a call
    assert many_hist.history == one_hist.history
    for a, b in zip(many.get_weights(), one.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    rows_x = xs.reshape(-1, 4, 12, 1).transpose(1, 0, 2, 3).reshape(4, -1, 1)
    rows_y = ys.reshape(-1, 4, 12, 1).transpose(1, 0, 2, 3).reshape(4, -1, 1)
    plain = bk.build_model("lstm", 5, seed=0)
    bk.fit(
        plain, rows_x, rows_y, batch_size=4, k1=4, shuffle=False, verbose=0, epochs=2,
        optimizer=keras.optimizers.SGD(0.05),
    )  # fmt: skip
    for a, b in zip(many.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_non_finite_block_inside_a_call_stops_exactly_there():
    x, y = _rows(n=16)
    y_bad = y.copy()
    y_bad[8:16, 8:12] = 3e38  # batch 2, third block of 4 steps
    runs = []
    for per_call in (1, None):
        model = bk.build_model("simple_rnn", 4, seed=0)
        optimizer = keras.optimizers.SGD(0.1)
        with pytest.warns(RuntimeWarning, match=r"epoch 1, step 2 \(block 8-12\)"):
            history = bk.fit(
                model, x, y_bad, batch_size=8, k1=4, shuffle=False, verbose=0,
                optimizer=optimizer, steps_per_execution=per_call,
            )  # fmt: skip
        assert history.nonfinite == {"epoch": 1, "step": 2}
        assert int(optimizer.iterations.numpy()) == 4 + 2  # batch 1, then two blocks of batch 2
        runs.append((model, history))
    # Calls of one block shape: [0-2], [3] (the 1-step block), [4-6], stopped at 6.
    assert (runs[0][1].compiled_calls, runs[1][1].compiled_calls) == (7, 3)
    for a, b in zip(runs[0][0].get_weights(), runs[1][0].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_ctrl_c_between_calls_that_split_batches_checkpoints_a_whole_batch(tmp_path):
    """Calls of 5 updates over batches of 4 blocks end mid-batch; Ctrl-C finishes the batch,
    checkpoints it, and the resumed run equals the uninterrupted one bit for bit."""
    x, y = _rows(n=32, steps=16)  # 4 batches of 4 blocks

    def run(epochs=2, callbacks=None, **kwargs):
        model = bk.build_model("lstm", 4, seed=0)
        history = bk.fit(
            model, x, y, batch_size=8, k1=4, epochs=epochs, seed=1, verbose=0,
            optimizer=keras.optimizers.Adam(0.01), steps_per_execution=5,
            callbacks=callbacks, **kwargs,
        )  # fmt: skip
        return model, history

    full, full_history = run()
    # The call of updates 5-9 ends inside batch 2 (updates 8-11): its hooks for batch 1 run,
    # SIGINT arrives, and the next call stops at the end of batch 2.
    with pytest.raises(KeyboardInterrupt, match="epoch 1, step 3"):
        run(callbacks=[SignalAt(0, 1)], checkpoint_dir=tmp_path)
    meta = load_checkpoint(latest_checkpoint(tmp_path))["meta"]
    assert (meta["epoch"], meta["step"], meta["batches_done"]) == (0, 3, 3)
    assert meta["accum"]["updates"] == 12
    resumed, resumed_history = run(checkpoint_dir=tmp_path, resume=True)
    assert resumed_history.history == full_history.history
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# --- compiled once, reused across fit calls ------------------------------------------------


def test_a_second_fit_reuses_the_compiled_step_and_a_fresh_default_optimizer():
    x, y = _rows(n=16)
    model = bk.build_model("simple_rnn", 4, seed=0)
    start = model.get_weights()
    first = bk.fit(model, x, y, batch_size=8, k1=4, epochs=2, seed=0, verbose=0)
    after_first = model.get_weights()
    model.set_weights(start)
    second = bk.fit(model, x, y, batch_size=8, k1=4, epochs=2, seed=0, verbose=0)
    assert first.trace_count >= 1 and second.trace_count == 0
    # The default Adam starts fresh every call (moments and step count reset), so the same
    # start gives the same run.
    assert second.history == first.history
    for a, b in zip(model.get_weights(), after_first, strict=True):
        np.testing.assert_array_equal(a, b)
    optimizer = keras.optimizers.Adam(0.01)
    third = bk.fit(model, x, y, batch_size=8, k1=4, optimizer=optimizer, seed=0, verbose=0)
    fourth = bk.fit(model, x, y, batch_size=8, k1=4, optimizer=optimizer, seed=0, verbose=0)
    assert third.trace_count >= 1 and fourth.trace_count == 0
    assert int(optimizer.iterations.numpy()) == 2 * 2 * 4  # the optimizer carries on


_COMPILE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import keras, numpy as np
    import bptt_keras as bk
    from bptt_keras.tasks import noisy_sines

    x, y = bk.next_step_pairs(noisy_sines(20, 61, seed=0))  # 20 rows x 60 steps
    model = bk.build_model("simple_rnn", 4, seed=0)
    optimizer = keras.optimizers.Adam(0.01)
    for _ in range(3):  # 3 fit calls x 2 epochs x 3 batches x 30 blocks of 2 steps
        bk.fit(model, x, y, batch_size=8, k1=2, epochs=2, optimizer=optimizer, verbose=0,
               steps_per_execution=7)
    # TBPTT(7, 11): three block shapes
    bk.fit(model, x, y, batch_size=8, k1=7, k2=11, epochs=2, optimizer=optimizer, verbose=0)
    series = noisy_sines(1, 8 * 60 + 1, seed=1)[0]
    xs, ys = bk.stream_batches(series, batch_size=8, seq_len=3)  # 20 stream batches
    stateful = bk.build_model("lstm", 4, stateful=True, batch_size=8, seed=0)
    for _ in range(2):
        bk.fit(stateful, xs, ys, batch_size=8, shuffle=False, epochs=2, verbose=0,
               steps_per_execution=3)
    print(json.dumps({"updates": int(optimizer.iterations.numpy())}))
    """
)


@pytest.mark.slow
def test_xla_compilations_do_not_grow_with_blocks_batches_epochs_or_fit_calls(tmp_path):
    dump = tmp_path / "xla"
    env = {**os.environ, "XLA_FLAGS": f"--xla_dump_to={dump}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    updates = json.loads(done.stdout.strip().splitlines()[-1])["updates"]
    assert updates == 3 * 2 * 3 * 30 + 2 * 3 * 9  # 540 + 54 updates
    compiled = [p.name for p in dump.iterdir() if p.name.endswith(".before_optimizations.txt")]
    # One compilation per block shape and model: (2, 2) for the 540 updates, (7, 7), (11, 7)
    # and (8, 4) for TBPTT(7, 11) over 60 steps, one for the stateful stream. Before the fix
    # every call (and every block position) compiled anew: hundreds.
    training = [name for name in compiled if "train_updates" in name]
    assert len(training) == 5, sorted(compiled)
    assert len(compiled) <= 8, sorted(compiled)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource
    import keras, numpy as np
    import bptt_keras as bk
    from bptt_keras.tasks import noisy_sines

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    class Probe(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = {}

        def on_train_batch_end(self, batch, logs=None):  # a batch hook: one call per batch
            if batch + 1 in (200, 2000):
                self.seen[batch + 1] = rss_mib()

    series = noisy_sines(1, 32 * 4000 + 1, seed=0)[0]
    xs, ys = bk.stream_batches(series, batch_size=32, seq_len=2)  # 2000 batches of 2 steps
    model = bk.build_model("simple_rnn", 16, stateful=True, batch_size=32, seed=0)
    probe = Probe()
    history = bk.fit(model, xs, ys, batch_size=32, shuffle=False, verbose=0, callbacks=[probe])
    print(json.dumps({"rss": probe.seen, "calls": history.compiled_calls}))
    """
)


@pytest.mark.slow
def test_resident_memory_does_not_grow_with_the_number_of_blocks():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["calls"] == 2000
    after_200, after_2000 = result["rss"]["200"], result["rss"]["2000"]
    # Before the fix every call compiled anew and kept it: about 2 MiB per block, 3.6 GiB
    # over these 1800 blocks. Allocator noise stays far below the bound.
    assert after_2000 - after_200 < 64, result


def test_a_long_stream_of_tiny_blocks_trains_to_the_end():
    series = noisy_sines(1, 32 * 4000 + 1, seed=0)[0]
    x, y = bk.stream_batches(series, batch_size=32, seq_len=4000)  # 32 rows x 4000 steps
    model = bk.build_model("simple_rnn", 16, seed=0)
    optimizer = keras.optimizers.Adam(1e-2)
    history = bk.fit(
        model, x, y, batch_size=32, k1=2, epochs=2, shuffle=False, optimizer=optimizer,
        verbose=0, seed=0,
    )  # fmt: skip
    assert int(optimizer.iterations.numpy()) == 2 * 2000
    assert history.nonfinite is None
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
