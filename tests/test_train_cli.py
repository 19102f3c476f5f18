"""`python -m ecomjax.train` end to end on a tiny run (metrics, checkpoints, plots, resume), its flag
errors, and `python -m ecomjax.evaluate --policy checkpoint:OUT` on the trained model."""

import json

import pytest

from ecomjax import evaluate, train
from ecomjax.rl.runlog import read_metrics
from ecomjax.text.tokenizer import builtin_tokenizer

TINY = ["--tasks", "STATUS", "--num-envs", "8", "--group-size", "4", "--hidden-size", "16", "--max-new-tokens", "12",
        "--max-seq-len", "1536", "--tool-result-tokens", "48", "--warm-start-episodes", "8", "--warm-start-steps", "2",
        "--num-products", "2000", "--checkpoint-every", "1", "--no-tensorboard", "--mesh", "none",
        "--heldout-episodes", "8"]


@pytest.mark.slow
def test_train_writes_metrics_checkpoints_and_plots_and_resumes(tmp_path):
    out = tmp_path / "run"
    train.main(TINY + ["--steps", "2", "--out", str(out)])
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1]
    for key in ("step", "reward_mean", "is_correct_mean", "curriculum/STATUS/l", "curriculum/STATUS/h", "loss"):
        assert all(key in r for r in rows), key
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout_before"]["episodes"] == 8 and -1 <= summary["heldout_after"]["reward"] <= 1
    assert (out / "reward.png").stat().st_size > 0 and (out / "curriculum.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    assert (out / "checkpoints" / "2" / "tokenizer" / "tokenizer.json").is_file()
    with pytest.raises(SystemExit, match="already holds checkpoints"):
        train.main(TINY + ["--steps", "3", "--out", str(out)])
    train.main(TINY + ["--steps", "3", "--out", str(out), "--resume"])
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [0, 1, 2]

    result = evaluate.main(["--policy", f"checkpoint:{out}", "--tasks", "STATUS", "--difficulties", "0",
                            "--episodes", "4", "--k", "2", "--num-products", "2000", "--out", str(tmp_path / "eval")])
    cell = json.loads((tmp_path / "eval" / "results.json").read_text())["results"]["STATUS"]["0"]
    assert cell == result["results"]["STATUS"]["0"] and cell["episodes"] == 4 and cell["trials"] == 2
    assert 0.0 <= cell["success_rate"] <= 1.0 and sum(cell["terminations"].values()) == 8

    args = evaluate.parse_args(["--policy", f"checkpoint:{out}", "--tasks", "STATUS", "--seed", "5"])
    assert (args.catalog, args.num_products, args.catalog_seed) == ("synthetic", 2000, 0)   # the training catalog
    catalog, vocab = evaluate.load_catalog(args)
    env, params = evaluate.make("C8", catalog=catalog)
    text_env = evaluate.model_runner(str(out), env, params, vocab, args).text_env
    assert (text_env.prompt_style, text_env.tool_result_tokens) == ("minimal", 48)   # the protocol it trained on
    assert text_env.tokenizer is builtin_tokenizer()                                # the tokenizer it saved


@pytest.mark.parametrize("flags, fragment", [
    (["--num-envs", "10", "--group-size", "4"], "multiple of --group-size"),
    (["--tasks", "SHOP"], "unknown task"),
    (["--lr", "-1"], "--lr"),
    (["--steps", "x"], "--steps"),
    (["--static-difficulty", "5,2"], "--static-difficulty"),
    (["--mesh", "3"], "--mesh"),
    (["--model-path", "/nonexistent"], "not a directory"),
    (["--max-new-tokens", "4096", "--max-seq-len", "2048"], "--max-new-tokens"),
])
def test_bad_flags_fail_with_a_message(flags, fragment, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(flags)
    assert fragment in capsys.readouterr().err


def test_evaluate_rejects_a_directory_without_checkpoints(tmp_path):
    with pytest.raises(SystemExit, match="no ecomjax checkpoint"):
        evaluate.main(["--policy", f"checkpoint:{tmp_path}", "--tasks", "STATUS", "--difficulties", "0",
                       "--episodes", "2", "--k", "1", "--num-products", "2000", "--out", str(tmp_path / "e")])
