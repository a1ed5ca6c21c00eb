"""Which Keras backend is configured, read without importing Keras.

The engine is TensorFlow code (GradientTape, tf.function, XLA, tf.distribute): under another
backend every call would fail later with an obscure error, so `import bptt_keras` refuses it.
"""

from __future__ import annotations

import json
import os


def error(backend) -> ImportError:
    """The one clear error for a Keras set to another backend than TensorFlow."""
    return ImportError(
        "bptt_keras needs Keras' TensorFlow backend, but Keras is set to run on "
        f"{backend!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}). "
        "Unset KERAS_BACKEND or set KERAS_BACKEND=tensorflow before importing keras."
    )


def configured() -> str:
    """The backend Keras will load, as Keras decides it: KERAS_BACKEND, else the "backend" of
    `$KERAS_HOME/keras.json` (default `~/.keras`), else TensorFlow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    try:
        with open(os.path.join(home, "keras.json")) as handle:
            return json.load(handle).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"
