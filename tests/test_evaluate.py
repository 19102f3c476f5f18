"""`python -m ecomjax.evaluate` end to end on a small catalog: JSON, plot, oracle vs noop, flag errors."""

import json
from pathlib import Path

import numpy as np
import pytest

from ecomjax.evaluate import main, pass_hat_k

TAU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tau-retail"


def test_pass_hat_k_matches_tau_bench_definition():
    successes = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [0, 0, 0, 0]])
    assert pass_hat_k(successes, 1) == pytest.approx((1 + 0.75 + 0) / 3)
    assert pass_hat_k(successes, 4) == pytest.approx(1 / 3)
    assert pass_hat_k(successes, 2) == pytest.approx((1 + 0.5 + 0) / 3)


@pytest.mark.parametrize("policy,want", [("oracle", 1.0), pytest.param("noop", 0.0, marks=pytest.mark.slow)])
def test_small_evaluation_writes_results(tmp_path, policy, want):
    out = tmp_path / policy
    main(["--policy", policy, "--collection", "C1", "--difficulties", "0,4", "--episodes", "16", "--k", "2",
          "--num-products", "500", "--out", str(out)])
    data = json.loads((out / "results.json").read_text())
    assert (out / "success_vs_difficulty.png").stat().st_size > 1000
    cells = data["results"]["PD"]
    assert set(cells) == {"0", "4"}
    for cell in cells.values():
        assert cell["episodes"] == 16 and cell["trials"] == 2
        assert cell["success_rate"] == pytest.approx(want, abs=0.07)
        assert set(cell) >= {"pass@1", "pass^2", "reward", "r_task", "r_eff", "r_hall", "hallucination_rate",
                             "tool_error_rate", "mean_turns", "terminations"}
        if policy == "noop":
            assert cell["r_task"] == -1.0


@pytest.mark.parametrize("argv,match", [
    (["--policy", "genius"], "--policy: unknown value 'genius'"),
    (["--collection", "C3"], "--collection"),
    (["--tasks", "PD,FOO"], "unknown task"),
    (["--difficulties", "0,-1"], "--difficulties"),
    (["--episodes", "0"], "--episodes"),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--policy", "checkpoint:/nope"], "is not a directory"),
    (["--catalog", "nonsense"], "--catalog 'nonsense': unknown catalog spec 'nonsense'; expected one of"),
    (["--catalog", "tau-retail:/nope"], "--catalog 'tau-retail:/nope': tau-retail folder '/nope' does not exist"),
])
def test_bad_flags_fail_with_one_clear_message(argv, match):
    with pytest.raises(SystemExit, match=match):
        main(argv)


@pytest.mark.slow
@pytest.mark.skipif(not (TAU / "products.json").is_file(), reason=f"τ-bench retail data not found at {TAU}")
def test_catalog_flag_evaluates_on_tau_retail(tmp_path):
    out = tmp_path / "tau"
    main(["--policy", "oracle", "--collection", "C1", "--difficulties", "3", "--episodes", "16", "--k", "1",
          "--catalog", f"tau-retail:{TAU}", "--out", str(out)])
    data = json.loads((out / "results.json").read_text())
    assert data["catalog"] == f"tau-retail:{TAU}" and data["num_products"] == 591
    assert data["results"]["PD"]["3"]["success_rate"] == 1.0
