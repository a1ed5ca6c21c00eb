"""Keras finds `BPTTModel` in a saved `.keras` file after `import bptt_keras`, without
`custom_objects`, while `import bptt_keras` itself still imports no TensorFlow.

Keras resolves a saved class by its registered name ("bptt_keras>BPTTModel") in its table of
custom objects, and imports modules by name only for its own packages. `bptt_keras` imports
TensorFlow lazily (the command-line tool answers `--help` at once), and TensorFlow itself
imports Keras halfway through its own import, when the real class (which needs TensorFlow)
cannot be imported yet. So the table gets a stand-in whose `from_config` imports the real
class and builds it; importing `bptt_keras.keras_model` later registers the real class over
it. The stand-in is put in as soon as Keras is loaded: now if it is, else right after Keras'
own import finishes, by a one-shot import hook. No TensorFlow is imported here.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

REGISTERED_NAME = "bptt_keras>BPTTModel"


class _BPTTModelOnFirstUse:
    """What Keras' loader finds until `bptt_keras.keras_model` is imported."""

    @classmethod
    def from_config(cls, config):
        from bptt_keras.keras_model import BPTTModel

        return BPTTModel.from_config(config)

    @classmethod
    def get_config(cls):  # Keras' registry asks registered classes for one
        raise NotImplementedError


def _register(keras) -> None:
    objects = keras.saving.get_custom_objects()
    objects.setdefault(REGISTERED_NAME, _BPTTModelOnFirstUse)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level `keras` package so that `_register` runs once
    Keras' own import is done; then leaves `sys.meta_path`. (A `find_spec("keras")` that
    only asks whether Keras is installed, as TensorFlow's import does, changes nothing.)"""

    def __init__(self):
        self._looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._looking:
            return None
        self._looking = True  # the lookup below must not find this finder again
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _register(module)

        loader.exec_module = exec_then_register
        return spec


def install() -> None:
    """Registers the stand-in now if Keras is loaded, else once it is."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "saving"):
        _register(keras)
    elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasImport())
