"""bench/distill_study.py: its statistics on known data, its regimes, and a --quick run end to end.

The --quick numbers mean nothing (a handful of steps); what is checked is that every arm of a
seed starts from the same weights, that the unlabelled rows reach only the distillation arms and
without their labels, and that the table reports what runs.jsonl holds.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from minibert import data as D

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("distill_study", ROOT / "bench" / "distill_study.py")
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def test_t_interval_is_students():
    values = [75.0, 78.5, 76.25]
    m, lo, hi = study.t_interval(values)
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert m == pytest.approx(np.mean(values)) and (lo, hi) == pytest.approx((low, high))
    assert study.t_interval([0.5]) == (0.5, 0.5, 0.5)  # one seed: no interval to give


def test_paired_bootstrap_brackets_the_difference_and_is_zero_for_equal_arms():
    rng = np.random.default_rng(0)
    b = (rng.random((3, 400)) < 0.75).astype(float)
    assert study.paired_bootstrap(b, b) == (0.0, 0.0)
    a = b.copy()
    a[:, :40] = 1 - a[:, :40]  # flips 40 of 400 answers per seed
    lo, hi = study.paired_bootstrap(a, b)
    assert lo <= (a - b).mean() <= hi and hi - lo > 0


def test_the_regime_hides_the_unlabelled_rows_labels_and_depends_on_the_seed():
    train = D.EncodedExamples([[101, i, 102] for i in range(50)], [[0, 0, 0]] * 50, np.arange(50) % 2)
    gold, both = study.split_regime(train, 10, 30, seed=1)
    assert len(gold) == 10 and len(both) == 40
    assert (both.labels[:10] == gold.labels).all() and (both.labels[10:] == D.IGNORE_INDEX).all()
    assert both.input_ids[:10] == gold.input_ids
    assert len({r[1] for r in both.input_ids}) == 40  # gold and unlabelled rows are disjoint
    other, _ = study.split_regime(train, 10, 30, seed=2)
    assert other.input_ids != gold.input_ids
    every, same = study.split_regime(train, None, 0, seed=1)
    assert every is train and same is train
    with pytest.raises(SystemExit, match="training rows"):
        study.split_regime(train, 30, 30, seed=1)


def test_quick_study_end_to_end(data_dir, tmp_path):
    out = tmp_path / "study"
    cmd = [sys.executable, "bench/distill_study.py", "--quick", "--methods", "finetune,kd,tinybert", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    arms = {(r["method"], r["steps"], r["seed"]) for r in runs}
    assert arms == {(m, s, seed) for seed in (1, 2) for m, s in (("finetune", 3), ("finetune", 6), ("kd", 6),
                                                                 ("tinybert", 6))}
    for r in runs:
        assert r["quick"] and len(r["correct"]) == 48 and r["curve"][-1][0] == r["steps"]
        assert r["last"] == pytest.approx(np.mean(r["correct"]))  # the last evaluation is the saved predictions'
    table = (out / "results.md").read_text()
    assert "its numbers mean nothing" in table and "| tinybert | 6 | 2 |" in table
    assert "vs finetune@" in table and (out / "study.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "teachers").iterdir()) == ["seed1", "seed2"]
    assert not (out / "scratch").exists()
    # a second invocation finds every run done: nothing retrained, the report rewritten
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0 and "seed 1 kd" not in again.stderr
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(runs)
