"""Where a minibert training step (or inference forward) spends its time: cProfile, grouped by kernel.

With --what infer it profiles one inference forward instead (a 2-label classifier, TinyBERT-4 or
--model minilm, batch --batch): the reference forward (eval mode, gradients on: what ran before
minibert/fast_inference.py) and the inference path (under no_grad), with --torch transformers'
forward under inference_mode, side by side by group. Everything below describes both.

Profiles the training step that bench/bench_speed.py times (zero_grad + forward + backward +
global-norm clip + AdamW, dropout on, TinyBERT-4, batch 32, sequence 128) and prints

  1. the step's time by kernel group — linear/matmul, attention, softmax, GELU, LayerNorm,
     dropout, embedding, loss, optimizer, glue — with each group's share, and
  2. the top functions (by self time) with the group each one was charged to;
  3. with --torch, the same groups for the torch step of the benchmark (torch.profiler),
     side by side with minibert's: the speed ratio of bench_speed.py, explained.

How minibert's time is charged to a group. cProfile records every Python function and every
C function called *as a function* (np.add.at, ufunc.reduce, ...), but not the NumPy work done
by operators (`x @ W.T`, `a * b`): that time is the *self time* of the Python function that
executed the operator. So each function's self time goes to a group:

  * functions of minibert are grouped by what they are (`functional.linear_forward` and
    `nn.Linear.*` -> linear/matmul, `functional.attention_*` -> attention, `optim.*` ->
    optimizer, ...; see MINIBERT_GROUPS below);
  * any other function (a NumPy/SciPy internal, a C builtin) is charged to the groups of its
    callers, split in proportion to the time spent under each caller, walking up the call
    graph until a minibert function is reached (e.g. `ufunc.reduce` called by
    `softmax_forward` counts as softmax).

The groups' totals therefore add up to the profiled step's time.

How torch's time is charged (--torch). torch.profiler records every ATen op and autograd
node with its self CPU time. Each phase of the step runs inside a `record_function` scope
(zero_grad, forward, backward, clip, optimizer); everything under zero_grad/clip/optimizer
is "optimizer". Inside forward/backward an op goes to the group of the nearest enclosing op
or autograd node with a known name (`aten::addmm`/`AddmmBackward0` -> linear/matmul,
`aten::bmm` -> attention, ...; see TORCH_GROUPS); element-wise ops, copies and gradient
accumulation that belong to none land in "glue".

Both profilers add overhead (cProfile a few per cent; torch.profiler more): the unprofiled
step time is printed next to the profiled one.

    python bench/profile_step.py                       # masked LM, B32 T128, minibert only
    python bench/profile_step.py --torch               # ... and torch, side by side
    python bench/profile_step.py --task cls --top 30
    python bench/profile_step.py --quick --torch       # smoke test: B4 T32
    MINIBERT_NUM_THREADS=1 python bench/profile_step.py --what infer --batch 32 --torch --torch-threads 1 --clock cpu
                                                       # one inference forward: before, after, torch
"""
from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_speed  # noqa: E402  (the same model, inputs and training steps as the benchmark)

# The kernel groups, shared by both libraries.
LINEAR = "linear/matmul"
DECODER = "linear/matmul: MLM decoder (V-wide)"
ATTENTION = "attention (QK^T, PV)"
SOFTMAX = "softmax"
GELU = "GELU"
LAYERNORM = "LayerNorm"
DROPOUT = "dropout"
EMBEDDING = "embedding"
TANH = "pooler tanh"
LOSS = "loss (+ MLM gather)"
OPTIMIZER = "optimizer (AdamW, clip, zero_grad)"
GLUE = "glue (reshapes, residual adds, copies)"
OTHER = "other"

# Qualified minibert names (module.Class.function) -> group, first match wins.
MINIBERT_GROUPS = [
    (r"^(functional|fast)\.linear_|^nn\.Linear\.|^model\.BertLayer\._qkv_weights$", LINEAR),
    (r"^model\.BertLMPredictionHead\.", DECODER),  # its own dense/GELU/LayerNorm are children
    (r"^(functional|fast)\.attention_", ATTENTION),
    (r"^(functional|fast)\.softmax_", SOFTMAX),
    (r"^(functional|fast)\.gelu|^backend\.erf$", GELU),
    (r"^(functional|fast)\.layernorm_|^nn\.LayerNorm\.", LAYERNORM),
    (r"^(functional|fast)\.dropout_|^nn\.Dropout\.|^backend\.RNG\.random$", DROPOUT),
    (r"^functional\.embedding_|^nn\.Embedding\.|^model\.BertEmbeddings\.|^backend\.scatter_add$", EMBEDDING),
    (r"^functional\.tanh_", TANH),
    (r"^losses\.|^(functional|fast)\.(cross_entropy|soft_cross_entropy|mse|check_labels)|^functional\.log_softmax$"
     r"|^model\._HeadModel\._mlm_", LOSS),
    (r"^optim\.", OPTIMIZER),
    # the inference path (fast_inference.py): the self time of its per-block closures is their
    # matmuls plus the bias/residual adds (project, rest) or the scores, softmax and P V (attend)
    (r"^fast_inference\.(_linear|_layer\.project|_layer\.rest)$", LINEAR),
    (r"^fast_inference\._layer\.attend$", ATTENTION),
    (r"^fast_inference\._gelu_$", GELU),
    (r"^fast_inference\._layernorm_$", LAYERNORM),
    (r"^fast_inference\._embeddings$", EMBEDDING),
    (r"^fast_inference\.", GLUE),
    (r"^model\.BertLayer\.(forward|backward)$|^model\.BertModel\.(forward|backward)$", GLUE),
    (r"^model\.|^nn\.|^backend\.", OTHER),
]

# torch op / autograd node names (prefix "autograd::engine::evaluate_function: " removed).
TORCH_GROUPS = [
    (r"^aten::(addmm|mm|linear)$|^(Addmm|Mm)Backward", LINEAR),
    (r"^aten::bmm$|^BmmBackward", ATTENTION),
    (r"^aten::(_?softmax|_softmax_backward_data)$|^SoftmaxBackward", SOFTMAX),
    (r"^aten::gelu|^GeluBackward", GELU),
    (r"layer_norm|^NativeLayerNormBackward", LAYERNORM),
    (r"dropout|bernoulli|^NativeDropoutBackward", DROPOUT),
    (r"embedding|^EmbeddingBackward", EMBEDDING),
    (r"^aten::tanh|^TanhBackward", TANH),
    (r"log_softmax|nll_loss|cross_entropy|^(LogSoftmax|NllLoss|Index)Backward|^aten::(index|nonzero)$", LOSS),
]
TORCH_OPTIMIZER_PHASES = {"zero_grad", "clip", "optimizer"}
TORCH_MODEL_PHASES = {"forward", "backward"}


def first_match(name: str | None, table) -> str | None:
    if name is None:
        return None
    for pattern, group in table:
        if re.search(pattern, name):
            return group
    return None


# ============================================================================== minibert


def minibert_functions() -> dict[tuple[str, int], str]:
    """(file, first line) -> 'module.Class.function' for every function defined in minibert/."""
    from minibert import backend, fast, fast_inference, functional, losses, model, nn, optim

    names = {}
    # the thread pool (threads.for_blocks) and fast.py's closures match no group: they count for their callers
    for mod in (backend, fast, functional, losses, model, nn, optim):
        short = mod.__name__.rsplit(".", 1)[-1]
        for obj_name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) != mod.__name__:
                continue  # imported from elsewhere
            if inspect.isfunction(obj):
                names[(obj.__code__.co_filename, obj.__code__.co_firstlineno)] = f"{short}.{obj_name}"
            elif inspect.isclass(obj):
                for attr, fn in vars(obj).items():
                    fn = getattr(fn, "__func__", fn)  # staticmethod / classmethod
                    if inspect.isfunction(fn):
                        code = fn.__code__
                        names[(code.co_filename, code.co_firstlineno)] = f"{short}.{obj_name}.{attr}"
    # fast_inference.py's work is done in closures (one per parallel region): named function.closure
    for obj_name, obj in vars(fast_inference).items():
        if inspect.isfunction(obj) and obj.__module__ == fast_inference.__name__:
            names[(obj.__code__.co_filename, obj.__code__.co_firstlineno)] = f"fast_inference.{obj_name}"
            for const in obj.__code__.co_consts:
                if inspect.iscode(const):
                    names[(const.co_filename, const.co_firstlineno)] = f"fast_inference.{obj_name}.{const.co_name}"
    return names


def label(func, names) -> str:
    """A readable name for a pstats function key (file, line, name)."""
    file, line, name = func
    if (file, line) in names:
        return names[(file, line)]
    if file == "~":
        return name  # a C function, e.g. "<method 'reduce' of 'numpy.ufunc' objects>"
    return f"{Path(file).name}:{line}({name})"


def charge_to_groups(stats: pstats.Stats, names) -> tuple[dict, dict]:
    """Each function's self time, split over kernel groups (see the module docstring).

    Returns ({group: seconds}, {function: {group: fraction}}).
    """
    raw = stats.stats  # func -> (primitive calls, calls, self time, cumulative time, callers)
    memo: dict = {}

    def shares(func, seen=frozenset()) -> dict[str, float]:
        """Fractions of func's time that belong to each group."""
        if func in memo:
            return memo[func]
        group = first_match(names.get(func[:2]), MINIBERT_GROUPS)
        if group is not None:
            result = {group: 1.0}
        else:
            callers = raw[func][4]  # caller -> (cc, nc, self time, cumulative time) under that caller
            weights = {c: v[3] for c, v in callers.items() if c in raw and c not in seen and c != func}
            total = sum(weights.values())
            if total <= 0:
                result = {OTHER: 1.0}
            else:
                result = defaultdict(float)
                for caller, w in weights.items():
                    for g, frac in shares(caller, seen | {func}).items():
                        result[g] += frac * w / total
                result = dict(result)
        if not seen:  # cache only what was computed without cutting a cycle
            memo[func] = result
        return result

    totals: dict[str, float] = defaultdict(float)
    per_func = {}
    for func, (_, _, tt, _, _) in raw.items():
        per_func[func] = s = shares(func)
        for group, frac in s.items():
            totals[group] += tt * frac
    return dict(totals), per_func


def profile_minibert(args, B: int, T: int) -> dict[str, float]:
    """Profile minibert's step, print its tables, return {group: ms per step}."""
    import minibert

    cfg = minibert.BertConfig(**bench_speed.TINYBERT4)
    if args.task == "cls":
        model = minibert.BertForSequenceClassification(cfg, num_labels=2, seed=0)
        step = bench_speed.minibert_train_step(model, bench_speed.make_inputs(B, T, "cls"), None)
    else:
        model = minibert.BertForMaskedLM(cfg, seed=0)
        step = bench_speed.minibert_train_step(model, bench_speed.make_inputs(B, T, "mlm"), True)
    return profile_calls(args, step, "step")


def infer_models(args):
    """(minibert model, transformers model) of --model for inference: TinyBERT-4 (random weights)
    or the MiniLM-L6 teacher, as 2-label classifiers in eval mode, the same weights on both sides."""
    import tempfile
    import warnings

    import minibert
    from minibert import checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "classifier initialised randomly" on the teacher
        if args.model == "tinybert4":
            ours = minibert.BertForSequenceClassification(minibert.BertConfig(**bench_speed.TINYBERT4), num_labels=2,
                                                          seed=0)
        else:
            ours = minibert.BertForSequenceClassification.from_pretrained(checkpoint.teacher_path("minilm-l6"),
                                                                          num_labels=2)
    with tempfile.TemporaryDirectory(prefix="minibert-profile-") as tmp:
        theirs = bench_speed.load_into_transformers(ours, "AutoModelForSequenceClassification", Path(tmp),
                                                    bench_speed.Device("numpy"))
    return ours.eval(), theirs.eval()


def profile_minibert_infer(args, model, B: int, T: int) -> dict[str, dict[str, float]]:
    """Profile one inference forward twice: the reference forward (eval mode, gradients on: what
    ran before fast_inference.py) and the inference path (under no_grad). {label: {group: ms}}."""
    import minibert

    x = bench_speed.make_inputs(B, T, "infer")

    def reference():
        model(x["input_ids"], x["token_type_ids"], x["attention_mask"])

    def inference_path():
        with minibert.no_grad():
            model(x["input_ids"], x["token_type_ids"], x["attention_mask"])

    return {"before: reference forward": profile_calls(args, reference, "forward", "reference forward (eval mode)"),
            "after: inference path": profile_calls(args, inference_path, "forward", "inference path (no_grad)")}


def profile_calls(args, step, unit: str, title: str = "") -> dict[str, float]:
    """cProfile `args.steps` calls of step (after one warm-up), print the tables, return {group: ms per call}."""
    step()  # warm-up: BLAS threads, allocator, first-call imports (scipy.special)
    plain = timed(step, args.steps)
    profiler = cProfile.Profile(CLOCK[0])
    t0 = CLOCK[0]()
    profiler.enable()
    for _ in range(args.steps):
        step()
    profiler.disable()
    profiled = (CLOCK[0]() - t0) / args.steps
    if args.save:
        profiler.dump_stats(str(args.save))

    stats = pstats.Stats(profiler)
    names = minibert_functions()
    totals, per_func = charge_to_groups(stats, names)
    per_step = {g: s / args.steps * 1e3 for g, s in totals.items()}
    print(f"## minibert{': ' + title if title else ''}: {plain * 1e3:.0f} ms per {unit} unprofiled, "
          f"{profiled * 1e3:.0f} ms under cProfile\n")
    print_groups(per_step)

    total = sum(totals.values()) or 1.0
    raw = stats.stats
    print(f"top {args.top} functions by self time")
    print(f"{'function':<58} {'calls':>7} {'ms/' + unit:>9} {'share':>7}  group")
    for func in sorted(raw, key=lambda f: -raw[f][2])[:args.top]:
        _, ncalls, tt, _, _ = raw[func]
        groups = per_func[func]
        group = max(groups, key=groups.get) + (" (split)" if len(groups) > 1 else "")
        print(f"{label(func, names)[:58]:<58} {ncalls // args.steps:7d} {tt / args.steps * 1e3:9.1f} "
              f"{tt / total:7.1%}  {group}")
    print()
    return per_step


# ============================================================================== torch


def torch_group(event, vocab_size: int) -> str:
    """The group of one torch.profiler event (see the module docstring).

    A linear/matmul op with a vocab_size-long dimension among its input shapes is the MLM
    decoder (forward addmm, or a backward mm); that needs `record_shapes=True`.
    """
    phase, group, e = None, None, event
    while e is not None:  # walk up the enclosing events
        name = e.name.removeprefix("autograd::engine::evaluate_function: ")
        if group is None:
            group = first_match(name, TORCH_GROUPS)
            if group == LINEAR and any(vocab_size in shape for shape in (event.input_shapes or [])):
                group = DECODER
        if name in TORCH_OPTIMIZER_PHASES | TORCH_MODEL_PHASES:
            phase = name
        e = e.cpu_parent
    if phase in TORCH_OPTIMIZER_PHASES:
        return OPTIMIZER
    if phase in TORCH_MODEL_PHASES:
        return group or GLUE
    return OTHER


def torch_groups(step, steps: int, vocab_size: int) -> tuple[float, float, dict[str, float]]:
    """(seconds per step unprofiled, seconds per step under torch.profiler, {group: ms per step}) of
    `step` (already warmed up), its events grouped by torch_group."""
    from torch.profiler import ProfilerActivity, profile

    plain = timed(step, steps)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    profiled = (time.perf_counter() - t0) / steps
    totals: dict[str, float] = defaultdict(float)
    for e in prof.events():
        totals[torch_group(e, vocab_size)] += e.self_cpu_time_total / 1e3  # µs -> ms
    return plain, profiled, {g: ms / steps for g, ms in totals.items()}


def profile_torch(args, B: int, T: int) -> dict[str, float]:
    """Profile the benchmark's torch step (gathered MLM / sequence classification)."""
    import torch
    from torch.profiler import record_function

    torch.set_num_threads(args.torch_threads)
    transformers = bench_speed.hf_quiet()
    cfg = transformers.BertConfig(**bench_speed.TINYBERT4)
    task = "cls" if args.task == "cls" else "mlm"
    auto = "AutoModelForSequenceClassification" if task == "cls" else "AutoModelForMaskedLM"
    model = getattr(transformers, auto).from_config(cfg, attn_implementation="eager").train()
    x = {k: torch.from_numpy(v) for k, v in bench_speed.make_inputs(B, T, task).items()}
    step = bench_speed.torch_train_step(model, x, gathered=(task == "mlm"), scope=record_function)

    step()  # warm-up: creates the gradients and the AdamW state
    plain, profiled, per_step = torch_groups(step, args.steps, cfg.vocab_size)
    variant = "transformers, sequence classification" if task == "cls" else "torch-gathered masked LM"
    print(f"## torch ({variant}, {torch.get_num_threads()} threads): {plain * 1e3:.0f} ms per step "
          f"unprofiled, {profiled * 1e3:.0f} ms under torch.profiler\n")
    print_groups(per_step)
    return per_step


def profile_torch_infer(args, model, B: int, T: int) -> dict[str, float]:
    """Profile transformers' forward under inference_mode (the bench's contestant), by group."""
    import torch
    from torch.profiler import record_function

    torch.set_num_threads(args.torch_threads)
    x = {k: torch.from_numpy(v) for k, v in bench_speed.make_inputs(B, T, "infer").items()}

    def step():
        with torch.inference_mode(), record_function("forward"):
            model(**x)

    step()
    plain, profiled, per_step = torch_groups(step, args.steps, model.config.vocab_size)
    note = ""
    if CLOCK[0] is not time.perf_counter:  # torch.profiler reads wall time: its groups, scaled to the CPU time
        scale = plain * 1e3 / (sum(per_step.values()) or 1.0)
        per_step = {g: ms * scale for g, ms in per_step.items()}
        note = " (--clock cpu: groups scaled to the unprofiled CPU time)"
    print(f"## torch (transformers, inference_mode, {torch.get_num_threads()} threads): {plain * 1e3:.1f} ms per "
          f"forward unprofiled, {profiled * 1e3:.1f} ms under torch.profiler{note}\n")
    print_groups(per_step)
    return per_step


# ============================================================================== output


CLOCK = [time.perf_counter]  # --clock cpu: time.process_time (set in main)


def timed(step, n: int) -> float:
    t0 = CLOCK[0]()
    for _ in range(n):
        step()
    return (CLOCK[0]() - t0) / n


def print_groups(per_step: dict[str, float]) -> None:
    total = sum(per_step.values()) or 1.0
    print(f"{'kernel group':<44} {'ms/step':>9} {'share':>7}")
    for group, ms in sorted(per_step.items(), key=lambda kv: -kv[1]):
        print(f"{group:<44} {ms:9.1f} {ms / total:7.1%}")
    print(f"{'total':<44} {total:9.1f} {1:7.1%}\n")


def print_side_by_side(ours: dict[str, float], theirs: dict[str, float]) -> None:
    """Per group: minibert ms, torch ms, and the difference (where the gap comes from)."""
    print("## side by side (profiled ms per step; the overheads of the two profilers differ)\n")
    print(f"| {'kernel group':<40} | minibert ms | torch ms | minibert − torch |")
    print(f"|{'-' * 42}|-------------|----------|------------------|")
    groups = sorted(set(ours) | set(theirs), key=lambda g: -(ours.get(g, 0) - theirs.get(g, 0)))
    for g in groups:
        a, b = ours.get(g, 0.0), theirs.get(g, 0.0)
        print(f"| {g:<40} | {a:11.1f} | {b:8.1f} | {a - b:+16.1f} |")
    a, b = sum(ours.values()), sum(theirs.values())
    print(f"| {'total':<40} | {a:11.1f} | {b:8.1f} | {a - b:+16.1f} |\n")


def print_columns(columns: dict[str, dict[str, float]]) -> None:
    """Per group, one column of profiled ms per call for each of `columns` (before, after, torch)."""
    print("## side by side (profiled ms per forward; the overheads of the two profilers differ)\n")
    names = list(columns)
    print("| kernel group | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    groups = sorted(set().union(*columns.values()), key=lambda g: -max(c.get(g, 0.0) for c in columns.values()))
    for g in groups:
        print(f"| {g} | " + " | ".join(f"{columns[n].get(g, 0.0):.1f}" for n in names) + " |")
    print("| total | " + " | ".join(f"{sum(columns[n].values()):.1f}" for n in names) + " |\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--what", choices=["train", "infer"], default="train",
                   help="train: one training step (default); infer: one inference forward, before (the reference "
                        "forward) and after (the no_grad inference path)")
    p.add_argument("--model", choices=["tinybert4", "minilm"], default="tinybert4", help="--what infer: which model")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: CPU seconds (cProfile's timer too), for one thread on a loaded machine")
    p.add_argument("--task", choices=["mlm", "cls"], default="mlm",
                   help="mlm: masked LM, logits at the 15%% labelled positions (default); cls: sequence classification")
    p.add_argument("--batch", type=int, default=None, help="default 32")
    p.add_argument("--seq", type=int, default=None, help="default 128")
    p.add_argument("--steps", type=int, default=1, help="profiled steps (after one unprofiled warm-up step)")
    p.add_argument("--top", type=int, default=25, help="how many minibert functions to list")
    p.add_argument("--torch", action="store_true", help="also profile the torch step and compare by group")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="smoke test: batch 4, sequence 32")
    p.add_argument("--save", type=Path, default=None, help="also write minibert's raw profile (pstats format)")
    args = p.parse_args(argv)
    B = args.batch or (4 if args.quick else 32)
    T = args.seq or (32 if args.quick else 128)

    import numpy as np

    CLOCK[0] = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.what == "infer":
        from minibert import threads

        B = args.batch or (2 if args.quick else 32)
        print(f"# one inference forward, {args.model} (2-label classifier), B={B} T={T}, numpy {np.__version__}, "
              f"minibert on {threads.num_threads()} thread(s); {args.steps} profiled forward(s) after 1 warm-up. "
              "cProfile sees the calling thread only: with MINIBERT_NUM_THREADS=1 every group is attributed, "
              "otherwise the other threads' share shows as waiting (glue)\n")
        ours, theirs = infer_models(args)
        columns = profile_minibert_infer(args, ours, B, T)
        if args.torch:
            columns["transformers"] = profile_torch_infer(args, theirs, B, T)
        print_columns(columns)
        return
    print(f"# one training step, {args.task}, TinyBERT-4, B={B} T={T}, numpy {np.__version__}; "
          f"{args.steps} profiled step(s) after 1 warm-up\n")
    ours = profile_minibert(args, B, T)
    if args.torch:
        theirs = profile_torch(args, B, T)
        print_side_by_side(ours, theirs)
    if args.quick:
        print("# --quick: small shapes, a smoke test; the shares at B=32 T=128 differ")


if __name__ == "__main__":
    main()
