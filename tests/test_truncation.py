"""The truncation plan: blocks, look-back, coverage of a dependency."""

import pytest

from bptt_keras.truncation import Block, check_truncation, covered_fraction, plan_blocks


def test_plan_blocks_matches_williams_and_peng():
    assert plan_blocks(10, 4, 6) == [
        Block(0, 0, 4, 2),
        Block(2, 4, 8, 6),
        Block(6, 8, 10, 8),
    ]
    assert plan_blocks(7, 7, 7) == [Block(0, 0, 7, 7)]  # full BPTT: one block, no cut
    chunks = plan_blocks(9, 3, 3)
    assert [(b.start, b.loss_start, b.end) for b in chunks] == [(0, 0, 3), (3, 3, 6), (6, 6, 9)]


def test_blocks_cover_every_loss_step_exactly_once():
    for time, k1, k2 in [(17, 4, 9), (20, 5, 5), (13, 1, 13), (8, 3, 4)]:
        steps = [t for b in plan_blocks(time, k1, k2) for t in range(b.loss_start, b.end)]
        assert steps == list(range(time))
        for b in plan_blocks(time, k1, k2):
            assert b.loss_start - b.start == min(k2 - k1, b.loss_start)


def test_covered_fraction_known_values():
    assert covered_fraction(40, 40, 40, 8) == 1.0
    assert covered_fraction(40, 8, 8, 8) == 0.0  # k2 - 1 < lag: never reaches back
    assert covered_fraction(40, 12, 12, 8) == pytest.approx(0.375)
    assert covered_fraction(40, 4, 12, 8) == 1.0  # k2 - k1 >= lag
    with pytest.raises(ValueError, match="`lag`"):
        covered_fraction(10, 2, 2, 10)


def test_check_truncation_defaults():
    assert check_truncation(None, None, 12) == (12, 12)
    assert check_truncation(3, None, 12) == (3, 3)
