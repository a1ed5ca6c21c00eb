"""A language model's loss in the units papers report: nats, bits per token, perplexity.

The engine's cross-entropy is the mean negative log-likelihood per token in nats,
`L = -1/N sum_t ln p(x_t | x_<t)`. Character models are compared in bits per character,
`L / ln 2`; word models in perplexity, `exp(L)`, the geometric mean of `1 / p(x_t | x_<t)`
(the branching factor the model is as uncertain as).
"""

from __future__ import annotations

import math

from bptt_keras._validation import check_float


def bits_per_token(nats: float) -> float:
    """Mean cross-entropy in bits (per character for a character model): `nats / ln 2`.

    Args:
        nats: mean cross-entropy per token in nats (the engine's loss).

    Returns:
        The same quantity in bits.

    Example:

    >>> round(bits_per_token(math.log(2)), 6)
    1.0
    """
    return check_float(nats, name="nats", low=0.0) / math.log(2)


def perplexity(nats: float) -> float:
    """Perplexity `exp(nats)` of a mean cross-entropy per token.

    Args:
        nats: mean cross-entropy per token in nats.

    Returns:
        The perplexity (1 for a perfect model, `V` for a uniform guess over `V` tokens).

    Example:

    >>> round(perplexity(math.log(65)), 6)
    65.0
    """
    return math.exp(check_float(nats, name="nats", low=0.0))
