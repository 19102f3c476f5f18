"""`ecomjax.rl.runlog.RunLog`: metrics.jsonl on resume, TensorBoard events, and a run without tensorboardX."""

import builtins
import warnings

import pytest

from ecomjax.rl import runlog
from ecomjax.rl.runlog import RunLog, read_metrics


@pytest.fixture
def no_tensorboardx(monkeypatch):
    """tensorboardX made unimportable (as on a machine without the `tb` extra), the once-per-process warning
    reset."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] == "tensorboardX":
            raise ModuleNotFoundError("No module named 'tensorboardX'", name="tensorboardX")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    runlog._warn_no_tensorboard.cache_clear()
    yield
    runlog._warn_no_tensorboard.cache_clear()


def test_missing_tensorboardx_is_one_warning_not_a_crash(tmp_path, no_tensorboardx):
    with pytest.warns(RuntimeWarning) as caught:
        log = RunLog(tmp_path / "a")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "tensorboardX is not installed" in message and "ecomjax[tb]" in message and "--no-tensorboard" in message
    assert caught[0].filename == __file__                         # points at the caller, not at runlog
    assert log.writer is None
    log.write({"step": 0, "reward_mean": 0.5})
    log.close()
    assert read_metrics(tmp_path / "a" / runlog.METRICS_FILE) == [{"step": 0, "reward_mean": 0.5}]
    assert not (tmp_path / "a" / runlog.TENSORBOARD_DIR).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = RunLog(tmp_path / "b")                           # warned once per process
    assert second.writer is None


def test_no_tensorboard_flag_needs_no_tensorboardx(tmp_path, no_tensorboardx):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log = RunLog(tmp_path, tensorboard=False)
    assert log.writer is None


def test_tensorboard_events_and_resume_trimming(tmp_path):
    pytest.importorskip("tensorboardX")
    log = RunLog(tmp_path)
    for step in range(3):
        log.write({"step": step, "loss": float(step), "nan": float("nan")})
    log.close()
    assert any((tmp_path / runlog.TENSORBOARD_DIR).iterdir())
    resumed = RunLog(tmp_path, resume_step=2, tensorboard=False)
    assert [r["step"] for r in resumed.rows] == [0, 1] and resumed.rows[0]["nan"] is None
    assert [r["step"] for r in read_metrics(tmp_path / runlog.METRICS_FILE)] == [0, 1]
