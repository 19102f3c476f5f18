"""The 12 axes and per-task schedules pinned against the reference table (SHOPRLVE §5)."""

import jax
import numpy as np
import pytest

from ecomjax.tasks.difficulty import AXES, check_difficulty, difficulty

# d: m, k_rec, T_max, p_missing, p_noise, p_switch, top_k, eps_rank, p_oos, H_orders, B_branch, B_tool
TABLE = {
    0: (2, 3, 4, 0.095, 0.000, 0.046, 200, 0.00, 0.00, 1, 1, 1),
    1: (2, 3, 4, 0.167, 0.010, 0.072, 190, 0.02, 0.05, 1, 1, 1),
    2: (3, 3, 5, 0.271, 0.020, 0.109, 180, 0.04, 0.10, 2, 1, 2),
    3: (3, 4, 5, 0.400, 0.030, 0.161, 170, 0.06, 0.15, 2, 2, 2),
    4: (4, 4, 6, 0.529, 0.040, 0.227, 160, 0.08, 0.20, 3, 2, 3),
    5: (4, 4, 6, 0.633, 0.050, 0.300, 150, 0.10, 0.25, 3, 2, 3),
    6: (5, 5, 7, 0.705, 0.060, 0.373, 140, 0.12, 0.30, 4, 3, 4),
    8: (6, 5, 8, 0.772, 0.080, 0.491, 120, 0.16, 0.40, 5, 3, 5),
    10: (7, 6, 9, 0.793, 0.100, 0.554, 100, 0.20, 0.50, 6, 4, 6),
    12: (8, 7, 10, 0.798, 0.120, 0.582, 80, 0.24, 0.50, 7, 5, 7),
    20: (12, 9, 14, 0.800, 0.125, 0.600, 20, 0.40, 0.50, 11, 7, 11),
}
# d: n_items, p_var, p_qty, p_edge, p_ref, n_categories, l_int, lambda_sim, alpha
SCHEDULES = {
    0: (1, 0.209, 0.0, 0.045, 0.209, 3, 2, 0.40, 4),
    3: (2, 0.661, 0.3, 0.237, 0.661, 4, 2, 0.55, 4),
    6: (3, 0.935, 0.5, 0.554, 0.935, 6, 3, 0.70, 5),
    9: (4, 0.991, 0.5, 0.676, 0.991, 7, 4, 0.80, 6),
    20: (5, 1.000, 0.5, 0.700, 1.000, 12, 5, 0.80, 9),
}


@pytest.mark.parametrize("d", sorted(TABLE))
def test_axes_match_reference_table(d):
    got = difficulty(d)
    for name, want in zip(AXES, TABLE[d]):
        assert float(getattr(got, name)) == pytest.approx(want, abs=6e-4), (d, name)


@pytest.mark.parametrize("d", sorted(SCHEDULES))
def test_task_schedules(d):
    got = difficulty(d)
    names = ("n_items", "p_var", "p_qty", "p_edge", "p_ref", "n_categories", "l_int", "lambda_sim", "alpha")
    for name, want in zip(names, SCHEDULES[d]):
        assert float(getattr(got, name)) == pytest.approx(want, abs=6e-4), (d, name)
    assert float(got.delta_max) == pytest.approx(0.5 * np.exp(-d / 5))


def test_vectorised_and_jitted_equal_scalar():
    ds = np.arange(21)
    batched = jax.jit(difficulty)(ds)
    for d in (0, 7, 20):
        for name in AXES:
            assert float(getattr(batched, name)[d]) == pytest.approx(float(getattr(difficulty(d), name)))


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True, None])
def test_bad_difficulty_is_rejected(bad):
    with pytest.raises(ValueError, match="difficulty"):
        check_difficulty(bad)
