"""Model cards: the README.md of every model folder a run saves, as on the Hugging Face hub.

    write_model_cards("runs/quick", results, (data, settings))   # the pipeline's student/ and teacher/
    write_model_cards("runs/ft", summary, (model, data, args))    # a fine-tuned folder and its best/

A card is what a model folder on the hub carries: YAML front matter that tools read
(`library_name`, `pipeline_tag`, `tags`, `datasets`, `metrics`, and a `model-index` with the dev
scores, which the hub shows as evaluation results), then prose for people: what the model is
(shape, labels), where it came from (teacher, method, data), how it scores on the dev set beside
its teacher (metrics, parameters, latency), the command that made it and every setting, and
how to use it with minibert and with transformers.

Every number is copied from the run's results (what results.json holds), nothing is measured
again; parameter counts of a fine-tuned folder, which finetune's results do not hold, are read
from its safetensors header. The command is the one typed (`sys.argv`) when the run came from
`python -m minibert.train`, else the library call with its settings. Cards are written
atomically. This module formats; it does not train, evaluate or time anything (`report.py`).
"""
from __future__ import annotations

import json
import math
import numbers
import shlex
import sys
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from . import checkpoint
from . import data as D
from .methods import METHODS
from .runfolder import write_text_atomic
from .specs import is_random_spec, parse_student_spec

CARD_NAME = "README.md"
MINILM = "MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2)"  # the bundled teacher, checkpoint.TEACHERS
# GLUE tasks on the hub: the nyu-mll/glue data set, one config per task
GLUE_CONFIGS = {"cola": "cola", "sst-2": "sst2", "mrpc": "mrpc", "sts-b": "stsb", "qqp": "qqp", "mnli": "mnli",
                "qnli": "qnli", "rte": "rte", "wnli": "wnli"}
# our metric names -> the hub's metric ids (Hugging Face `evaluate`'s names)
METRIC_IDS = {"acc": "accuracy", "f1": "f1", "mcc": "matthews_correlation", "pearson": "pearsonr",
              "spearman": "spearmanr", "mse": "mse", "mae": "mae"}
# keys of a results entry that are not dev metrics
NOT_METRICS = {"step", "examples", "accuracy", "main_metric", "score", "params", "encoder_params", "latency_ms",
               "latency_ms_b32"}
# the usage snippets' input, for a single-text task and for a pair task
EXAMPLES = {False: '"a gripping film"',
            True: '{"text": "A man is playing a guitar.", "text_pair": "A person plays music."}'}


# ================================================================================== the pieces


def dev_metrics(entry: dict) -> dict[str, float]:
    """The dev metrics of a results entry ({"acc": 0.86, "f1": ...}), without sizes, speeds and aliases."""
    return {k: v for k, v in entry.items() if k not in NOT_METRICS and not k.startswith("examples")
            and isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)}


def parameter_counts(folder: Path) -> tuple[int, int]:
    """(all parameters, encoder parameters) of a saved model, from its safetensors header (no weights read)."""
    infos, _, _ = checkpoint.read_header(folder / checkpoint.WEIGHTS_NAME)
    sizes = {name: math.prod(info.shape) for name, info in infos.items()}
    return sum(sizes.values()), sum(n for name, n in sizes.items() if ".encoder." in f".{name}")


def task_title(task: str) -> str:
    """ "SST-2 (GLUE)" for a GLUE task, the name itself for your own data."""
    return f"{task.upper()} (GLUE)" if task in GLUE_CONFIGS else task


def is_pair_task(task: str) -> bool:
    try:
        return D.get_task(task).is_pair
    except ValueError:  # your own data: the registry does not know it
        return False


def command_line(function: str, settings: tuple) -> str:
    """The command that made the run: as typed, when it came from `python -m minibert.train`; else
    the library call, each settings group with the fields that differ from its defaults."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == "minibert.train":
        return " ".join(["python -m minibert.train", shlex.join(sys.argv[1:])]).strip()

    def call(s) -> str:
        changed = [f"{f.name}={getattr(s, f.name)!r}" for f in fields(s)
                   if f.default is MISSING or getattr(s, f.name) != f.default]
        return f"{type(s).__name__}({', '.join(changed)})"

    return f"{function}({', '.join(call(s) for s in settings)})"


def front_matter(name: str, task: str, metrics: dict[str, float], tags: list[str]) -> str:
    """The card's YAML header. Strings are written as JSON strings, which YAML reads as they are."""
    q = json.dumps
    glue = GLUE_CONFIGS.get(task)
    lines = ["---", "library_name: minibert", "pipeline_tag: text-classification", "tags:"]
    lines += [f"- {q(t)}" for t in tags]
    if glue:
        lines += ["datasets:", "- nyu-mll/glue"]
    lines += ["metrics:"] + [f"- {q(METRIC_IDS.get(m, m))}" for m in metrics]
    lines += ["model-index:", f"- name: {q(name)}", "  results:", "  - task:", "      type: text-classification",
              "      name: Text Classification", "    dataset:", f"      name: {q(task_title(task))}",
              f"      type: {q('nyu-mll/glue' if glue else task)}"]
    if glue:
        lines.append(f"      config: {q(glue)}")
    lines += ["      split: validation", "    metrics:"]
    for m, value in metrics.items():
        lines += [f"    - type: {q(METRIC_IDS.get(m, m))}", f"      value: {q(float(value))}",
                  f"      name: {q('dev ' + m)}"]
    return "\n".join(lines + ["---", ""])


def markdown_table(rows: list[tuple[str, dict]], metrics: list[str]) -> str:
    """A Markdown table: one row per (name, results entry), dev metrics x 100 (MSE and MAE as they are), sizes,
    latency if measured."""
    timed = all("latency_ms" in r for _, r in rows if "params" in r)  # a baseline row has no model to time
    head = ["model", *(f"dev {m}" for m in metrics), "parameters", "encoder parameters"]
    shown = lambda m, v: f"{v:.4f}" if m in D.LOWER_IS_BETTER else f"{100 * v:.2f}"  # errors in the labels' unit
    head += ["latency b1 (ms)", "latency b32 (ms)"] if timed else []
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows:
        cells = [name, *(shown(m, r[m]) if m in r else "—" for m in metrics),
                 f"{r['params']:,}" if "params" in r else "—",
                 f"{r['encoder_params']:,}" if "encoder_params" in r else "—"]
        cells += ([f"{r['latency_ms']:.1f}", f"{r['latency_ms_b32']:.1f}"] if "latency_ms" in r else ["—", "—"]) \
            if timed else []
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def example_input(data, pair: bool) -> tuple[str, str]:
    """(the Python call's argument, the predict command's arguments): the first dev example of the run's
    data (as its file writes it), else a made-up one (EXAMPLES). A pair is passed as {"text", "text_pair"}."""
    example = None
    try:
        columns = D.Columns(data.text_column, data.text_pair_column, data.label_column)
        files = D.task_files(data.task, data_dir=data.data, train_file=data.train_file, dev_file=data.dev_file,
                             columns=columns, offline=True, need_dev=not data.validation_split)
        path = files.dev[0][0] if files.dev else files.train
        table = D.read_table(path) if files.by_name(path) else None
        if table is not None:
            text, text_pair, _ = D.resolve_columns(table, columns)
            record = table.rows[0][1]
            example = (str(record[text]).strip(), str(record[text_pair]).strip() if text_pair else None)
        else:
            first = D.read_examples(files.task, path)[0]
            example = (first.text_a, first.text_b)
    except (ValueError, OSError, IndexError, KeyError, AttributeError):  # no data at hand: a made-up example
        pass
    if example is None:
        return EXAMPLES[pair], ('--input pairs.csv --text-column sentence1 --text-pair-column sentence2' if pair
                                else '"a gripping film" "dull"')
    text, text_pair = example
    text = text if len(text) <= 200 else text[:200].rsplit(" ", 1)[0]
    if text_pair is not None:
        return json.dumps({"text": text, "text_pair": text_pair}, ensure_ascii=False), \
            "--input pairs.csv --text-column sentence1 --text-pair-column sentence2"
    return json.dumps(text, ensure_ascii=False), shlex.quote(text)


def usage(folder: Path, pair: bool, data=None) -> str:
    """How to call the model: minibert's classifier, the predict command, transformers' pipeline; the
    example is the run's first dev text when the data is at hand (example_input)."""
    (example, cli), where = example_input(data, pair), shlex.quote(str(folder))
    return "\n".join([
        "## Usage", "", "With minibert (NumPy, no PyTorch):", "", "```python", "from minibert import TextClassifier",
        f"clf = TextClassifier.from_pretrained({str(folder)!r})",
        f"clf({example})   # [{{'label': ..., 'score': ...}}]",
        "```", "", "```bash", f"python -m minibert.train predict --model {where} {cli}", "```", "",
        "With transformers (the folder is a Hugging Face BERT checkpoint):", "", "```python",
        "from transformers import pipeline", f"clf = pipeline(\"text-classification\", model={str(folder)!r})",
        f"clf({example})", "```", ""])


def made_by(command: str, settings: tuple) -> str:
    """The command, then every setting of the run (JSON, folded)."""
    everything = json.dumps({type(s).__name__: asdict(s) for s in settings}, indent=2, default=str)
    return "\n".join(["## How it was made", "", "```bash" if command.startswith("python") else "```python", command,
                      "```", "", "<details><summary>every setting of the run</summary>", "", "```json", everything,
                      "```", "", "</details>", ""])


def describe_shape(folder: Path) -> tuple[str, list[str], bool]:
    """("3-layer, 384-wide BERT (12 heads, vocabulary 30,522)", label names, regression?) of a saved classifier."""
    config = checkpoint.load_config(folder)
    labels = config.label_names(len(config.extra.get("id2label") or {}) or 2)
    regression = config.problem_type == "regression"
    shape = (f"{config.num_hidden_layers}-layer, {config.hidden_size}-wide BERT ({config.num_attention_heads} heads, "
             f"vocabulary {config.vocab_size:,})")
    return shape, labels, regression


def kind_of_model(regression: bool) -> str:
    """ "regression model" (one score, trained on MSE) or "classifier"."""
    return "regression model (one output, trained on the mean squared error)" if regression else "classifier"


def what_it_predicts(task: str, labels: list[str], regression: bool) -> str:
    if regression:
        return f"a regression on {task_title(task)}: one score per input"
    return f"{task_title(task)}, {len(labels)} classes ({', '.join(f'`{n}`' for n in labels)})"


def data_line(data) -> str:
    """Which examples trained it, from the TaskDataSettings."""
    train = f"`{data.train_file}`" if data.train_file else "the task's training set"
    if data.max_train_examples:
        train += f" (its first {data.max_train_examples:,} examples)"
    dev = f"`{data.dev_file}`" if data.dev_file else "the task's dev set"
    if data.max_eval_examples:
        dev += f" (its first {data.max_eval_examples:,} examples)"
    return f"- **Data**: trained on {train}, scored on {dev}; inputs of at most {data.max_length} tokens."


def card(folder: Path, task: str, metrics_entry: dict, intro: str, details: list[str], table: str, command: str,
         settings: tuple, tags: list[str]) -> str:
    """A whole card: front matter, title, intro, details, results table, how it was made, usage."""
    metrics = dev_metrics(metrics_entry)
    parts = [front_matter(folder.name, task, metrics, tags), f"# {folder.name}", "", intro, "", *details, "",
             "## Results", "", table, "", made_by(command, settings),
             usage(folder, is_pair_task(task), _by_type(settings).get("TaskDataSettings"))]
    return "\n".join(parts)


# ============================================================================= the runs' cards


def _by_type(settings: tuple) -> dict:
    return {type(s).__name__: s for s in settings}


def _epochs(epochs: float) -> str:
    return f"{epochs:g} epoch{'s' if epochs != 1 else ''}"


def _stage(steps: int, epochs: float) -> str:
    return f"{steps:,} steps" if steps else _epochs(epochs)


def pipeline_cards(out: Path, results: dict, settings: tuple) -> dict[Path, str]:
    """The distilled student's card and, when the run fine-tuned its teacher, the teacher's."""
    s = _by_type(settings)
    data, distill, training = s["TaskDataSettings"], s["TaskDistillSettings"], s["TrainArgs"]
    task, teacher, student = results["task"], results["teacher"], results["student"]
    folder = Path(results["student_folder"])
    teacher_folder = Path(distill.teacher) if distill.teacher else out / "teacher"
    shape, labels, regression = describe_shape(folder)
    main = student["main_metric"]
    command = command_line("minibert.distillation.pipeline", settings)
    origin = f"`{distill.teacher}`" if distill.teacher else f"{MINILM} fine-tuned in the same run, `{teacher_folder}`"
    method = getattr(distill, "method", "tinybert")  # its losses: distill-task --help, --method
    has_inter = "intermediate" in METHODS[method].stages  # kd, distilbert, pkd have no intermediate stage
    inter = (_stage(distill.inter_steps, distill.inter_epochs) if has_inter and (distill.inter_steps or
                                                                                 distill.inter_epochs) else None)
    targets = ("the teacher's score as the target, mean squared error" if regression else
               f"the teacher's logits as soft targets, temperature {distill.temperature:g}")
    stages = ((f"the intermediate-layer stage for {inter} at learning rate {distill.inter_lr:g}, then " if inter
               else "") +
              f"the prediction stage ({targets}) for "
              f"{_stage(distill.pred_steps, distill.pred_epochs)} at peak learning rate {distill.pred_lr:g}; batch "
              f"{training.batch_size}, seed {training.seed}, layer mapping {distill.mapping}. The student handed over "
              f"is the best of the dev evaluations (every {training.eval_steps} steps).")
    start = {"teacher": "the teacher's embeddings, classifier and encoder layers "
                        f"{distill.student.split(':', 1)[-1]} (0-based), copied",
             "preset": f"a randomly initialised `{distill.student}`",
             "folder": f"`{distill.student}` (e.g. a general-distillation student)"}
    kind, _ = parse_student_spec(distill.student)
    details = [f"- **Predicts**: {what_it_predicts(task, labels, regression)}.",
               f"- **Teacher**: {origin}.", f"- **Student**: started from {start[kind]}.",
               f"- **Method**: task distillation, `--method {method}`: {stages}", data_line(data),
               f"- **Run time**: {results['wall_s']:,} s for the whole run."]
    summary = (f"The student keeps {100 * results['retained']:.1f}% of the teacher's dev {main} at "
               f"{results['speedup_b1']:.1f}x (batch 1) / {results['speedup_b32']:.1f}x (batch 32) its speed. "
               "Latency: minibert's forward pass at sequence 64, median of repeats, measured at the end of the run on "
               "the machine that trained it.")
    metric_names = list(dev_metrics(student))
    table = markdown_table([(f"teacher (`{teacher_folder}`)", teacher), ("**this model**", student),
                            *baseline_row(results)], metric_names)
    cards = {folder: card(folder, task, student, f"A {shape} {kind_of_model(regression)} distilled by minibert.",
                          details,
                          table + "\n\n" + summary, command, settings,
                          ["minibert", "bert", "text-classification", "knowledge-distillation", method])}
    if not distill.teacher and (teacher_folder / checkpoint.CONFIG_NAME).is_file():
        t_shape, _, _ = describe_shape(teacher_folder)
        t_details = [f"- **Predicts**: {what_it_predicts(task, labels, regression)}.",
                     f"- **Fine-tuned from**: {MINILM}, {_epochs(distill.teacher_epochs)} at learning rate "
                     f"{distill.teacher_lr:g}, batch {training.batch_size}, seed {training.seed}.", data_line(data),
                     f"- **Student**: the teacher of `{folder}`."]
        cards[teacher_folder] = card(teacher_folder, task, teacher, f"A {t_shape} {kind_of_model(regression)} "
                                     "fine-tuned by minibert as a distillation teacher.", t_details,
                                     markdown_table([("**this model**", teacher)], metric_names), command, settings,
                                     ["minibert", "bert", "text-classification"])
    return cards


def finetune_cards(out: Path, results: dict, settings: tuple) -> dict[Path, str]:
    """The cards of the fine-tuned folder (the best dev checkpoint, when evaluated), its last/ (the model at
    the end of training) and best/."""
    s = _by_type(settings)
    data, args = s["TaskDataSettings"], s["TrainArgs"]
    task = results["task"]
    command = command_line("minibert.finetune.finetune", settings)
    length = (f"{results['steps']:,} steps" if args.max_steps else
              f"{_epochs(args.epochs)} ({results['steps']:,} steps)")
    spec = results["model"]
    origin = (MINILM if spec == "minilm-l6" else
              f"encoder layers {spec.split(':', 1)[1]} (0-based) of {MINILM}" if spec.startswith("teacher:") else
              f"a randomly initialised `{spec}`" if is_random_spec(spec) else f"`{spec}`")
    cards = {}
    final = {k: v for k, v in results["final"].items() if k != "step"}
    best = {k: v for k, v in (results.get("best_eval") or {}).items() if k != "step"} or None
    main = args.metric_for_best  # finetune sets it to the task's main metric when not given
    if results.get("handed_over") == "best" and best:
        folders = ((out, best, f"the checkpoint with the best dev {main}, the model this run hands over (the one at "
                               f"the end of training is in `last/`)"),
                   (out / "last", final, f"the model at the end of training (the best dev {main} is in `{out}`)"),
                   (out / "best", best, f"the trainer's copy of the best checkpoint, the same as `{out}`"))
    else:
        folders = ((out, final, "the model at the end of training (no dev evaluation chose another)"),
                   (out / "last", final, f"the model at the end of training, the same as `{out}`"))
    for folder, entry, which in folders:
        if entry is None or not (folder / checkpoint.CONFIG_NAME).is_file():
            continue
        shape, labels, regression = describe_shape(folder)
        params, encoder = parameter_counts(folder)
        details = [f"- **Predicts**: {what_it_predicts(task, labels, regression)}.",
                   f"- **Fine-tuned from**: {origin}, {length} at learning rate {args.lr:g}, batch "
                   f"{args.batch_size}, seed {args.seed}; this folder holds {which}.",
                   data_line(data), f"- **Run time**: {results['wall_s']:,} s."]
        rows = [("**this model**", {**entry, "params": params, "encoder_params": encoder}), *baseline_row(results)]
        table = markdown_table(rows, list(dev_metrics(entry)))
        cards[folder] = card(folder, task, entry, f"A {shape} {kind_of_model(regression)} fine-tuned by minibert.",
                             details, table,
                             command, settings, ["minibert", "bert", "text-classification"])
    return cards


def baseline_row(results: dict) -> list[tuple[str, dict]]:
    """A regression's predict-the-mean row for a results table ([] for a classification): the number a
    regression must beat, since a good correlation can hide a worse error than the mean's."""
    b = results.get("baseline")
    return [(f"predicting the {b['of']} ({b['mean']:.4g})", {"mse": b["mse"], "mae": b["mae"]})] if b else []


def write_model_cards(out, results: dict, settings: tuple) -> list[Path]:
    """README.md in each model folder that `results` (written to `out`) describes: the pipeline's
    student (and its teacher, when fine-tuned in the run) or a fine-tuned folder (and best/).
    settings: the run's settings dataclasses. Returns the cards' paths."""
    out = Path(out)
    cards = pipeline_cards(out, results, settings) if "student_folder" in results else \
        finetune_cards(out, results, settings)
    return [write_text_atomic(folder / CARD_NAME, text) for folder, text in cards.items()]
