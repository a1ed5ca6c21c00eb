"""The names the options accept, importable without Keras: the command line's help text and
`TrainConfig.validate` need them before (or without) TensorFlow's import."""

CELL_NAMES: tuple[str, ...] = ("simple_rnn", "lstm", "gru")
"""Recurrent cells accepted by `build_model(cell=...)`."""

INITS: tuple[str, ...] = ("default", "orthogonal", "glorot", "irnn")
"""Initialisation schemes accepted by `build_model(init=...)`."""
