"""Data-parallel training (minibert.distributed, the trainer's several-process path).

Host logic without MPI: how a global batch is shared, the loss weights that make the summed
gradients the global batch's, the flat gradient buffer, the ordered sum, the NCCL bootstrap
and reducer against a fake NCCL. Then real runs of the command line under `mpiexec -n 2`
(the mpich wheel of the `mpi` extra, next to this Python) on a tiny model, seconds each:
the same weights as one process, bit-identical repeats with the ordered reduction, files
written by rank 0 alone, a fault on rank 1 that ends the run at once, and resume.

Run as a script, this file is the program mpiexec starts (see `driver` at the bottom).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # as a script (under mpiexec) too

from minibert import BertConfig, BertForPreTraining, BertForSequenceClassification, distributed  # noqa: E402
from minibert.data import IGNORE_INDEX  # noqa: E402
from minibert.data.batching import shard_batch  # noqa: E402
from minibert.finetune import classification_step  # noqa: E402
from minibert.optim import zero_grads  # noqa: E402
from minibert.pretrain import pretraining_step  # noqa: E402
from minibert.trainer import Trainer, TrainArgs  # noqa: E402
from minibert.run_checkpoints import verify_checkpoint  # noqa: E402

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent))  # the mpich wheel's


# ============================================================ sharing a global batch


def mlm_batch(B=6, T=10, V=40, seed=0) -> dict:
    """A pre-training batch whose rows hold different numbers of real and labelled tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, T + 1, size=B)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int32)  # (B, T)
    labels = np.full((B, T), IGNORE_INDEX, dtype=np.int32)
    for i in range(B):
        at = rng.choice(np.arange(1, lengths[i]), size=1 + i % 3, replace=False)  # 1 to 3 labelled tokens
        labels[i, at] = rng.integers(5, V, size=len(at))
    return {"input_ids": (rng.integers(5, V, size=(B, T)) * mask).astype(np.int32),
            "token_type_ids": np.zeros((B, T), np.int32), "attention_mask": mask, "labels": labels,
            "next_sentence_label": rng.integers(0, 2, size=B).astype(np.int32)}


def test_each_process_takes_its_rows_and_the_weights_add_up_to_one():
    batch = mlm_batch(B=7)
    assert shard_batch(batch, 0, 1) == (batch, 1.0, 1.0)  # one process: the batch itself
    for size in (2, 3, 7):
        shards = [shard_batch(batch, r, size) for r in range(size)]
        rows = np.concatenate([s.batch["input_ids"] for s in shards])
        assert np.array_equal(rows, batch["input_ids"])  # every row once, in order
        assert sum(s.rows for s in shards) == pytest.approx(1.0)
        assert sum(s.labelled for s in shards) == pytest.approx(1.0)
        assert max(len(s.batch["labels"]) for s in shards) - min(len(s.batch["labels"]) for s in shards) <= 1
    labelled = (batch["labels"] != IGNORE_INDEX).sum(axis=1)  # (B,) 1, 2, 3, 1, ...
    first = shard_batch(batch, 0, 2)  # rows 0-3 of 7
    assert first.rows == 4 / 7 and first.labelled == labelled[:4].sum() / labelled.sum()
    # a last batch smaller than the number of processes: the processes without a row run a stand-in, weighted 0
    small = {k: v[:2] for k, v in batch.items()}
    stand_in = shard_batch(small, 3, 4)
    assert stand_in.rows == 0 and stand_in.labelled == 0 and len(stand_in.batch["input_ids"]) == 1


def gradients(model) -> dict:
    return {k: g.copy() for k, g in model.named_gradients().items()}


def sharded_gradients(model, step, batch, size, labelled=True) -> dict:
    """The gradients summed over `size` processes' shares of `batch`, as the reduction sums them."""
    zero_grads(model.named_gradients())
    for rank in range(size):
        share = shard_batch(batch, rank, size)
        if getattr(step, "weighs_labelled_tokens", False):
            step(share.batch, share.rows, share.labelled if labelled else share.rows)
        else:
            step(share.batch, share.rows)
    return gradients(model)


def assert_same_gradients(a: dict, b: dict, rtol=1e-9):
    """Each tensor within rtol of its own scale; the attention key biases, whose exact gradient is 0
    (softmax ignores a shift) and whose computed one is rounding noise, within rtol of 1e-6 of the largest."""
    floor = 1e-6 * max(np.abs(g).max() for g in a.values())
    for name in a:
        scale = max(np.abs(a[name]).max(), floor)
        assert np.abs(a[name] - b[name]).max() <= rtol * scale, name


def test_summed_shares_are_the_global_batch_gradient_masked_lm_and_next_sentence():
    """MLM is a mean over labelled tokens, NSP over rows; with each weighted by its own share,
    the gradients summed over any number of processes are the global batch's (float64)."""
    cfg = BertConfig.from_preset("tiny", vocab_size=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(cfg, seed=1).astype(np.float64)
    step, batch = pretraining_step(model), mlm_batch()
    whole = sharded_gradients(model, step, batch, 1)
    for size in (2, 4, 8):  # 8 > 6 rows: two processes run a stand-in row, weighted 0
        assert_same_gradients(whole, sharded_gradients(model, step, batch, size))
    # weighting the masked LM by rows instead is measurably wrong: the test can fail
    wrong = sharded_gradients(model, step, batch, 3, labelled=False)  # 3, 4 and 5 labelled tokens
    name = "bert.embeddings.word_embeddings.weight"
    assert np.abs(wrong[name] - whole[name]).max() > 1e-3 * np.abs(whole[name]).max()


def test_summed_shares_are_the_global_batch_gradient_classification():
    cfg = BertConfig.from_preset("tiny", vocab_size=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(cfg, num_labels=3, seed=2).astype(np.float64)
    batch = mlm_batch(B=5)
    batch = {**batch, "labels": np.array([0, 2, 1, 1, 0], np.int32)}
    step = classification_step(model)
    whole = sharded_gradients(model, step, batch, 1)
    for size in (2, 3):
        assert_same_gradients(whole, sharded_gradients(model, step, batch, size))


# ================================================================ the buffers


def test_every_gradient_is_a_view_of_one_flat_buffer():
    cfg = BertConfig.from_preset("tiny", vocab_size=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(cfg, seed=3)
    step, batch = pretraining_step(model), mlm_batch()
    step(batch, 1.0, 1.0)
    before = gradients(model)
    flat = distributed.flatten_gradients({"": model})
    grads = model.named_gradients()
    assert flat.size == sum(g.size for g in grads.values()) == model.num_parameters()
    assert all(np.shares_memory(g, flat) for g in grads.values())
    assert_same_gradients(before, gradients(model), rtol=0)  # values kept
    step(batch, 1.0, 1.0)  # backward accumulates into the buffer itself
    assert np.array_equal(flat, np.concatenate([g.reshape(-1) for g in grads.values()]))
    assert np.allclose(flat, np.concatenate([2 * before[k].reshape(-1) for k in grads]), rtol=1e-5, atol=1e-8)
    zero_grads(grads)
    assert not flat.any()


def test_parameters_round_trip_through_one_flat_array():
    cfg = BertConfig.from_preset("tiny", vocab_size=40)
    a, b = BertForPreTraining(cfg, seed=4), BertForPreTraining(cfg, seed=5)
    distributed.unflatten_parameters(distributed.flatten_parameters(a.named_parameters()), b.named_parameters())
    assert all(np.array_equal(p, b.named_parameters()[k]) for k, p in a.named_parameters().items())


def test_ordered_sum_adds_in_rank_order():
    parts = (np.random.default_rng(0).standard_normal((5, 1000)) * 10.0 ** np.arange(5)[:, None]).astype(np.float32)
    out = np.empty(1000, np.float32)
    distributed.ordered_sum(parts, out)
    expected = parts[0].copy()
    for p in parts[1:]:
        expected = expected + p
    assert np.array_equal(out, expected)
    reverse_out = np.empty_like(out)
    distributed.ordered_sum(parts[::-1], reverse_out)
    assert not np.array_equal(out, reverse_out)  # float addition is not associative: order matters


# ============================================================ NCCL, with a fake NCCL


class FakeComm:
    """The MPI communicator methods the bootstrap uses; rank 0's broadcast value comes from `sent`."""

    def __init__(self, rank, size, sent=None):
        self.rank, self.size, self.sent = rank, size, sent

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def bcast(self, obj, root=0):
        return obj if self.rank == root else self.sent


class FakeNCCL:
    """cupy.cuda.nccl's names; the communicator acts as if a second process held `peer` (a host array)."""

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0

    def __init__(self, arrays: dict, peer=None):
        self.arrays, self.peer, self.calls = arrays, peer, []

    def get_unique_id(self):
        self.calls.append("get_unique_id")
        return (1, 2, 3)

    def NcclCommunicator(self, ndev, unique_id, rank):
        self.calls.append(("NcclCommunicator", ndev, unique_id, rank))
        return self

    def allReduce(self, send, recv, count, dtype, op, stream):
        self.calls.append(("allReduce", count, dtype, op, stream, send == recv))
        self.arrays[recv]._a[...] = self.arrays[send]._a + self.peer

    def allGather(self, send, recv, count, dtype, stream):
        self.calls.append(("allGather", count, dtype, stream))
        self.arrays[recv]._a[...] = np.stack([self.arrays[send]._a, self.peer])

    def bcast(self, buff, count, dtype, root, stream):
        self.calls.append(("bcast", count, dtype, root, stream))


def test_nccl_bootstrap_broadcasts_rank_0s_unique_id():
    nccl = FakeNCCL({})
    distributed.nccl_communicator(FakeComm(0, 2), 0, 2, nccl)
    assert nccl.calls == ["get_unique_id", ("NcclCommunicator", 2, (1, 2, 3), 0)]
    nccl = FakeNCCL({})
    distributed.nccl_communicator(FakeComm(1, 2, sent=(1, 2, 3)), 1, 2, nccl)
    assert nccl.calls == [("NcclCommunicator", 2, (1, 2, 3), 1)]  # rank 1 only receives the id


def test_each_process_takes_the_gpu_of_its_local_rank():
    used = []
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 2),
                                 Device=lambda n: types.SimpleNamespace(use=lambda: used.append(n)))
    distributed.select_gpu(1, cuda)
    assert used == [1]
    with pytest.raises(RuntimeError, match="no GPU of its own"):
        distributed.select_gpu(2, cuda)


@pytest.mark.parametrize("mode", ["allreduce", "ordered"])
def test_nccl_reducer_sums_in_place_on_the_current_stream(monkeypatch, mode):
    """The reducer's calls on CuPy arrays (the CPU stand-in, with device pointers faked)."""
    import cupy_standin

    cp = cupy_standin.install(monkeypatch)
    arrays = {}

    def pointer(a):
        arrays[id(a)] = a
        return types.SimpleNamespace(ptr=id(a))

    monkeypatch.setattr(cupy_standin.DeviceArray, "data", property(pointer), raising=False)
    monkeypatch.setattr(cp.cuda, "get_current_stream", lambda: types.SimpleNamespace(ptr=99), raising=False)
    mine, peer = np.arange(6, dtype=np.float32), np.full(6, 0.5, np.float32)
    flat = cp.asarray(mine)
    nccl = FakeNCCL(arrays, peer)
    reducer = distributed.NCCLReducer(nccl, nccl, 2, mode)
    reducer.sum(flat)
    assert np.array_equal(flat.get(), mine + peer)
    expected = ("allReduce", 6, nccl.NCCL_FLOAT32, nccl.NCCL_SUM, 99, True) if mode == "allreduce" else (
        "allGather", 6, nccl.NCCL_FLOAT32, 99)
    assert nccl.calls == [expected]
    reducer.broadcast(flat)
    assert nccl.calls[-1] == ("bcast", 6, nccl.NCCL_FLOAT32, 0, 99)
    with pytest.raises(ValueError, match="float16"):
        reducer.sum(cp.asarray(mine.astype(np.float16)))


# ============================================================ one process, and settings


def test_one_process_never_imports_mpi4py():
    code = ("import sys; import minibert.train, minibert.distributed as d; w = d.setup(); "
            "assert (w.rank, w.size) == (0, 1) and 'mpi4py' not in sys.modules, sorted(sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in distributed.SIZE_VARIABLES}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)


def test_launcher_size_and_reduction_mode_from_the_environment():
    assert distributed.launched_size({}) == 1
    assert distributed.launched_size({"PMI_SIZE": "4"}) == 4
    assert distributed.launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert distributed.reduction_mode({}) == "allreduce"
    with pytest.raises(ValueError, match="MINIBERT_REDUCTION='sorted'"):
        distributed.reduction_mode({"MINIBERT_REDUCTION": "sorted"})


def test_a_batch_size_that_does_not_split_is_an_error_naming_it(monkeypatch, tmp_path):
    monkeypatch.setattr(distributed, "_WORLD", distributed.World(FakeComm(0, 3)))
    model = BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=40), num_labels=2)

    class Batches:
        batch_size = 8

        def __len__(self):
            return 4

    with pytest.raises(ValueError, match=r"batch_size=8 does not split evenly over 3 processes"):
        Trainer(TrainArgs(output_dir=str(tmp_path), batch_size=8), {"": model}, Batches(), classification_step(model))


# ============================================================ real runs under mpiexec


FINETUNE = ["finetune", "--max-train-examples", "60", "--max-eval-examples", "32", "--max-length", "32",
            "--batch-size", "8", "--max-steps", "9", "--log-steps", "2", "--save-steps", "4", "--lr", "1e-3",
            "--progress", "false"]  # 60 examples: 8 batches an epoch, the last of 4 rows; 9 steps cross an epoch


def run(processes: int, model: Path, out: Path, *extra: str, driver=(), reduction="allreduce", timeout=300):
    """`python -m minibert.train finetune ...` through this file's driver, under mpiexec for several processes."""
    cmd = [sys.executable, __file__, *driver, *FINETUNE, "--model", str(model), "--output-dir", str(out), *extra]
    if processes > 1:
        cmd = [mpiexec(), "-n", str(processes), *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MINIBERT_NUM_THREADS": "1", "MINIBERT_REDUCTION": reduction}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def mpiexec() -> str:
    """The mpiexec of this Python's environment: CI installs the mpi extra, so its absence is a failure."""
    if MPIEXEC is None:
        pytest.fail(f"mpiexec not found next to {sys.executable}: pip install -e '.[mpi]' (mpi4py and mpich)")
    return MPIEXEC


def ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tok):
    """Tiny classifiers in Hugging Face folders: without dropout, and with it."""
    root = tmp_path_factory.mktemp("models")
    for name, p in (("off", 0.0), ("on", 0.1)):
        cfg = BertConfig.from_preset("tiny", vocab_size=len(tok), hidden_dropout_prob=p, attention_probs_dropout_prob=p)
        BertForSequenceClassification(cfg, num_labels=2, seed=0).save_pretrained(root / name, tokenizer=tok)
    return root


@pytest.fixture(scope="module")
def dropout_off(models, tmp_path_factory):
    """One process and two processes on the same global batches (no dropout), 2 micro-batches a step
    (one reduction after both); rank 1's writes audited."""
    root = tmp_path_factory.mktemp("off")
    ok(run(1, models / "off", root / "n1", "--grad-accum", "2"))
    audit = root / "writes"
    ok(run(2, models / "off", root / "n2", "--grad-accum", "2",
           driver=["--audit-writes", str(root / "n2"), str(audit)]))
    return root


def test_two_processes_end_with_one_process_weights_within_float32_rounding(dropout_off):
    one, two = weights(dropout_off / "n1"), weights(dropout_off / "n2")
    worst = 0.0
    for name, w in one.items():
        scale = np.abs(w).max()
        if scale < 1e-6:  # the attention key biases: their gradient is 0 (softmax ignores a shift), values are noise
            continue
        worst = max(worst, float(np.abs(two[name] - w).max() / scale))
    print(f"\nworst relative difference, 1 vs 2 processes, after 9 steps of 2 micro-batches: {worst:.2e}")
    # float32 rounding (the sums run in another order; whether any bit differs depends on the CPU)
    assert worst < 1e-4
    assert {r["world_size"] for r in records(dropout_off / "n2") if "loss" in r} == {2}  # not a run against itself
    assert {r["world_size"] for r in records(dropout_off / "n1") if "loss" in r} == {1}
    losses = [(a["loss"], b["loss"]) for a, b in zip(records(dropout_off / "n1"), records(dropout_off / "n2"))
              if "loss" in a]
    assert len(losses) == 5 and all(abs(a - b) <= 1e-5 * abs(a) for a, b in losses), losses


def test_rank_0_alone_writes_and_every_record_has_the_world_size(dropout_off):
    out = dropout_off / "n2"
    writes = {rank: json.loads((dropout_off / f"writes.{rank}.json").read_text()) for rank in (0, 1)}
    assert writes[1] == [] and len(writes[0]) > 10, writes  # the audit sees rank 0's writes, and none of rank 1
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-8", "checkpoint-9"]
    assert (out / "results.json").is_file() and (out / "best" / "model.safetensors").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries, the lock released
    log = records(out)
    assert [r["step"] for r in log] == [2, 4, 6, 8, 9, 9] and all(r["world_size"] == 2 for r in log)
    state = json.loads((out / "checkpoint-9" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng_states_by_rank"]) == 2
    assert state["rng_states"] == state["rng_states_by_rank"][0]


@pytest.fixture(scope="module")
def ordered(models, tmp_path_factory):
    """Two processes with dropout, the ordered reduction: twice (a, b); then a run whose rank 1 fails at
    step 5 (fault; a copy as it was left), resumed with 2 processes (fault) and with 1 (fault-n1)."""
    root = tmp_path_factory.mktemp("ordered")
    for name in ("a", "b"):
        ok(run(2, models / "on", root / name, reduction="ordered"))
    t0 = time.perf_counter()
    fault = run(2, models / "on", root / "fault", driver=["--fail-at", "1", "5"], reduction="ordered", timeout=300)
    seconds = time.perf_counter() - t0  # a hang would have raised TimeoutExpired
    shutil.copytree(root / "fault", root / "fault-as-left")
    shutil.copytree(root / "fault", root / "fault-n1")
    ok(run(2, models / "on", root / "fault", "--resume", "auto", reduction="ordered"))
    n1 = ok(run(1, models / "on", root / "fault-n1", "--resume", "auto"))
    return types.SimpleNamespace(root=root, fault=fault, fault_seconds=seconds, n1_stderr=n1.stderr)


def test_repeated_runs_with_the_ordered_reduction_are_bit_identical(ordered):
    a, b = weights(ordered.root / "a"), weights(ordered.root / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    untimed = [[{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records(ordered.root / name)]
               for name in "ab"]
    assert untimed[0] == untimed[1]


def test_a_fault_on_one_process_ends_all_at_once_naming_it_and_the_checkpoint_resumes(ordered):
    assert ordered.fault.returncode != 0
    assert "error on rank 1 of 2: RuntimeError: injected fault at optimizer step 5" in ordered.fault.stderr
    print(f"\na fault on rank 1 ended both processes in {ordered.fault_seconds:.1f} s")
    left = ordered.root / "fault-as-left"
    assert [p.name for p in left.glob("checkpoint-*")] == ["checkpoint-4"]
    verify_checkpoint(left / "checkpoint-4")  # intact
    # resumed with 2 processes: bit-identical to the uninterrupted run, dropout included
    resumed, whole = weights(ordered.root / "fault"), weights(ordered.root / "a")
    assert all(np.array_equal(resumed[k], whole[k]) for k in whole)


def test_resuming_with_another_number_of_processes_continues_from_the_same_global_batch(ordered):
    note = " ".join(ordered.n1_stderr.split())
    assert "was written by 2 processes, this run has 1: it continues from the same global batch (step 4" in note
    continued = json.loads((ordered.root / "fault-n1" / "checkpoint-9" / "trainer_state.json").read_text())
    whole = json.loads((ordered.root / "a" / "checkpoint-9" / "trainer_state.json").read_text())
    # the same data position and the same tokens seen: the same global batches, whatever the processes
    assert [continued[k] for k in ("step", "epoch", "batch", "tokens")] == [whole[k] for k in
                                                                            ("step", "epoch", "batch", "tokens")]
    assert continued["world_size"] == 1 and "rng_states_by_rank" not in continued
    assert [r["step"] for r in records(ordered.root / "fault-n1")] == [2, 4, 6, 8, 9, 9]


def test_sigterm_to_mpiexec_stops_every_process_at_the_same_step_with_a_checkpoint(models, tmp_path):
    """mpiexec passes the signal on; the stop flag is OR-ed over the processes each step, so all
    of them write (rank 0) or wait for the same checkpoint and exit 143 together."""
    out = tmp_path / "run"
    cmd = [mpiexec(), "-n", "2", sys.executable, __file__, *FINETUNE, "--max-steps", "100000", "--log-steps", "1",
           "--save-steps", "0", "--model", str(models / "off"), "--output-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MINIBERT_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(15)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    [checkpoint] = out.glob("checkpoint-*")
    state = verify_checkpoint(checkpoint)
    assert f"stopped: interrupted by SIGTERM at step {state['step']}" in err
    assert state["world_size"] == 2 and len(state["rng_states_by_rank"]) == 2


def test_a_command_that_does_not_train_refuses_several_processes(tmp_path):
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "minibert.train", "vocab", "--output-dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode != 0 and "this command runs in one process, not 2" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "vocab.txt").exists()


# ============================================================ the program mpiexec starts


def driver(argv: list[str]) -> None:
    """`python tests/test_distributed.py [--fail-at RANK STEP] [--audit-writes FOLDER REPORT] <train.py args>`.

    --fail-at: the fine-tuning step function raises on process RANK at optimizer step STEP.
    --audit-writes: every process records what it writes, creates, renames or deletes under
    FOLDER (Python's audit events) and leaves the list in REPORT.<rank>.json at exit.
    """
    from minibert import finetune
    from minibert.train import main

    while argv and argv[0] in ("--fail-at", "--audit-writes"):
        option, x, y, argv = argv[0], argv[1], argv[2], argv[3:]
        if option == "--fail-at":
            rank, step, original = int(x), int(y), finetune.classification_step

            def failing(model):
                step_fn, calls = original(model), [0]

                def fn(batch, scale):
                    calls[0] += 1  # one micro-batch per optimizer step here
                    if distributed.world().rank == rank and calls[0] == step:
                        raise RuntimeError(f"injected fault at optimizer step {step}")
                    return step_fn(batch, scale)
                return fn

            finetune.classification_step = failing
        else:
            audit_writes(Path(x).resolve(), Path(y))
    main(argv)


def audit_writes(folder: Path, report: Path) -> None:
    import atexit

    seen = []
    writes = ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate")

    def hook(event, args):
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1] or "", args[2] or 0
            if not (set(mode) & set("wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                return
        elif event not in writes:
            return
        path = str(args[0])
        if Path(os.path.abspath(path)).is_relative_to(folder):
            seen.append([event, path])

    sys.addaudithook(hook)
    atexit.register(lambda: report.with_name(f"{report.name}.{distributed.world().rank}.json").write_text(
        json.dumps(seen[:50])))


if __name__ == "__main__":
    driver(sys.argv[1:])
