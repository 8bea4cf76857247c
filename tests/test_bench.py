"""The benchmark scripts run end to end (smoke mode: tiny shapes, numbers meaningless).

Speed is never asserted here; these only keep the scripts the README quotes working:
parity checks inside bench_speed.py still run, so a broken kernel fails here too.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def test_bench_speed_quick():
    text = run("bench/bench_speed.py", "--quick", "--what", "all", "--markdown")
    for case in ("train-cls", "train-mlm", "infer-tinybert4-b1", "infer-minilm-b32"):
        assert case in text
    assert "minibert_kernels" in text and "ratio" in text


def test_profile_step_quick():
    text = run("bench/profile_step.py", "--quick", "--torch")
    assert "GELU" in text and "attention" in text and "total" in text


def test_profile_step_infer_quick():
    text = run("bench/profile_step.py", "--what", "infer", "--quick", "--torch")
    for column in ("before: reference forward", "after: inference path", "transformers"):
        assert column in text
    assert "linear/matmul" in text


def test_infer_alone_times_the_four_ways():
    text = run("bench/infer_alone.py", "--calls", "2", "--seq", "16")
    for way in ("minibert alone", "transformers alone", "right after a transformers call", "right after a minibert call"):
        assert way in text
    assert "ratio minibert / transformers: alone" in text


def test_student_sizes():
    text = run("bench/student_sizes.py", "--repeats", "1", "--seq", "8")
    assert text.count("| ") >= 6 and "2x384 (teacher:0,5)" in text


def test_student_probe(data_dir, tmp_path):
    """--probe scores copied-layer students; here on the pre-trained MiniLM saved with a 2-label head."""
    from minibert.checkpoint import teacher_path
    from minibert.model import BertForSequenceClassification

    BertForSequenceClassification.from_pretrained(teacher_path("minilm-l6"), num_labels=2).save_pretrained(tmp_path)
    text = run("bench/student_sizes.py", "--probe", str(tmp_path), "--probe-examples", "32")
    assert "| 0,5 |" in text and "| 0,2,4 |" in text and text.count("\n|") == 2 + 15 + 20
