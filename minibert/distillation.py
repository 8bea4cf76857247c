"""The distillation runs, every method through TinyBERT's stages: general distillation, augmentation, task distillation.

    stage 1  general distillation   teacher encoder -> student encoder on a general corpus,
                                    L_att + L_hid + L_emb (no labels, no heads)
    augment  data augmentation      each training sentence -> N_a copies with words replaced
                                    by masked-LM / GloVe candidates
    stage 2a intermediate layers    fine-tuned teacher -> student on (augmented) task data,
                                    L_att + L_hid + L_emb, constant learning rate
    stage 2b prediction layer       the same pair, L_pred only, warmup + linear decay,
                                    evaluated on dev, the best checkpoint kept

    general_distillation(GeneralDistillSettings(), CorpusSettings(), TrainArgs(output_dir="runs/general"))
    augment(TaskDataSettings("sst-2"), AugmentSettings(), CorpusSettings())
    results = pipeline(TaskDataSettings("sst-2", max_train_examples=4000), TaskDistillSettings(pred_steps=150),
                       TrainArgs(output_dir="runs/sst2", eval_steps=50))
    print(report.results_table(results))

`pipeline` fine-tunes the teacher first when `settings.teacher` is None, then runs stage 2 and
describes both models; `task_distillation` is stage 2 alone, for models already in hand. The
losses live in `distill.py`, the loop in `trainer.py`, students in `specs.py`, the table in
`report.py`, flags in `train.py`; the settings' fields (`settings.py`) are the flags' help.

Other methods run through the same stages: `settings.method` (kd, distilbert, pkd, minilm,
minilmv2; `methods.METHODS`) picks each stage's losses, and a stage the method lacks is skipped
(kd, distilbert and pkd are one objective, run as the prediction stage). When every teacher
output a stage reads is small (logits, [CLS] states), the teacher runs once per example and
later epochs reuse its outputs (`teacher_cache.py`; `cache_teacher`).

Decisions (the reference code's choice in brackets):
- The teacher runs in eval mode, so its targets are deterministic [dropout left on].
  Distillation targets that change from step to step only add noise to a regression loss.
- AdamW with bias correction and global-norm clipping [BertAdam, per-tensor clipping]: the
  same optimiser everywhere in minibert, and the first steps of a constant-LR stage (2a)
  are not inflated by the missing bias correction. `--optimizer bertadam --clip per_tensor`
  reproduces the reference.
- The student may also start from chosen teacher layers ("teacher:0,2,4"), DistilBERT-style,
  instead of (or before) general distillation. In distill-task/pipeline they are the
  *fine-tuned* teacher's layers, with its classifier: the student starts where the teacher's
  task knowledge is. Which layers matters: with a fine-tuned teacher the top one carries
  the task (`bench/student_sizes.py --probe` scores every subset before training), and the
  trade-off table of docs/results.md is why 2 layers (teacher:0,5) is the >= 3x student.
  distill-general also takes "teacher:0,5": the *pre-trained* teacher's layers, distilled
  further on the general corpus (TinyBERT's "smart init" plus stage 1); distill-task then
  starts from that folder and copies the fine-tuned teacher's classifier onto it.
- A stage-1 student folder carries its fit_dense projection (checkpoint.FIT_DENSE_NAME), and
  stage 2 continues it. One that does not fit the teacher (another width) is an error unless
  `fit_dense_mismatch="reinit"` asks for a fresh projection, which is then logged as a warning.
"""
from __future__ import annotations

import time
from dataclasses import fields as _fields
from pathlib import Path

import numpy as np

from .messages import say
from .errors import DataError
from . import checkpoint
from . import data as D
from .distill import Distiller
from .distributed import world
from .evaluation import evaluate, evaluate_mlm
from .finetune import LAST, class_report, load_task_data, regression_baseline, train_classifier
from .interrupts import check
from .model import BertForMaskedLM, BertForSequenceClassification, BertModel
from .pretrain import pretraining_data
from .report import compare, describe, write_results
from .methods import METHODS
from .settings import (TASK_DISTILL_TRAINING, AugmentSettings, CorpusSettings, GeneralDistillSettings,
                       MaskingSettings, RunOptions, TaskDataSettings, TaskDistillSettings, TrainArgs, result_settings)
from .specs import (DEFAULT_TEACHER, build_student, label_classifier, load_teacher, tokenizer_for, model_labels,
                    parse_student_spec, student_encoder)
from .teacher_cache import TeacherCache
from .trainer import Trainer, TrainState, weighs_labelled_tokens

# Stage 1 reads plain text: pretraining_data with one "masked" token per sequence, which
# general_batches then puts back (no 80/10/10 corruption reaches the teacher or the student).
PLAIN_TEXT = MaskingSettings(masked_lm_prob=0.0, max_predictions_per_seq=1, whole_word_mask=False)
BERT_MASKING = MaskingSettings()  # augmentation's MLM head learns on BERT's own masked-LM data


# ================================================================================ steps


def distill_step(student, teacher, distiller: Distiller, stage: str, cache: TeacherCache | None = None):
    """step_fn for the trainer: teacher targets (a constant; from `cache` when given), student forward,
    losses, backward."""
    logged = distiller.logged(stage)  # read at log steps only: no device sync per step

    def step_fn(batch, scale):
        ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
        t_out = cache(batch) if cache is not None else teacher(ids, types, mask)
        s_out = student(ids, types, mask)
        losses = distiller(s_out, t_out, stage=stage, attention_mask=mask, labels=batch.get("labels"))
        distiller.backward_into(student, scale)
        return {"loss": losses["total"], **{k: losses[k] for k in logged}}

    return step_fn


def trained_modules(student, distiller: Distiller) -> dict:
    """What the optimiser trains, by checkpoint prefix: the student, and TinyBERT's fit_dense when the method has it."""
    return {"": student, **({"distill.": distiller.fit_dense} if distiller.fit_dense is not None else {})}


def save_student(folder, student, distiller: Distiller | None, tokenizer) -> None:
    """The student in Hugging Face layout, plus fit_dense (when the method has one) so a later stage can continue it."""
    student.save_pretrained(folder, tokenizer=tokenizer)
    if distiller is not None and distiller.fit_dense is not None:
        checkpoint.save_fit_dense(folder, distiller.fit_dense)


# =========================================================== stage 1: general distillation


def general_batches(pre: D.PretrainingData) -> D.PretrainingData:
    """General distillation reads plain text: undo the one masked token per sequence."""
    ids = np.where(pre.mlm_labels != D.IGNORE_INDEX, pre.mlm_labels, pre.input_ids).astype(pre.input_ids.dtype)
    return D.PretrainingData(ids, pre.token_type_ids, pre.attention_mask,
                             np.full_like(pre.mlm_labels, D.IGNORE_INDEX), pre.next_sentence_label)


def heldout_losses(student, teacher, distiller: Distiller, held: D.PretrainingData, batch_size: int,
                   max_batches: int = 10) -> dict:
    """Mean held-out stage-1 losses (no metric exists before task data): heldout_<loss> for the stage's losses
    (TinyBERT: att and rep), and heldout_total."""
    sums = {}
    batches = D.make_epoch_batches(len(held), batch_size, shuffle=False)[:max_batches]
    for idx in batches:
        check("an evaluation")
        b = held.collate(idx)
        student.eval()
        s_out = student(b["input_ids"], b["token_type_ids"], b["attention_mask"])
        t_out = teacher(b["input_ids"], b["token_type_ids"], b["attention_mask"])
        losses = distiller(s_out, t_out, stage="general", attention_mask=b["attention_mask"])
        student.train()
        for k in distiller.logged("general") + ["total"]:
            sums[k] = sums.get(k, 0.0) + float(losses[k])
    return {f"heldout_{k}": v / len(batches) for k, v in sums.items()}


def general_distillation(settings: GeneralDistillSettings, corpus: CorpusSettings, args: TrainArgs,
                         run: RunOptions = RunOptions()) -> TrainState:
    """Stage 1: the pre-trained teacher's encoder -> a student encoder on the general corpus.

    The student (and its fit_dense) is saved to args.output_dir, ready for task distillation.
    """
    teacher = BertModel.from_pretrained(checkpoint.resolve_model_path(settings.teacher)).eval()
    tok = tokenizer_for(settings.teacher, settings.vocab)
    student = student_encoder(settings.student, teacher, tok, args.seed)
    distiller = Distiller(student.config, teacher.config, method=settings.method, strategy=settings.mapping,
                          relation_heads=settings.relation_heads or None, relation_layer=settings.relation_layer or None,
                          seed=args.seed)
    for m in (teacher, student, distiller):
        m.to(run.device)
    say("building the general corpus ...")
    train, held = pretraining_data(tok, corpus, PLAIN_TEXT, args.seed)
    train, held = general_batches(train), general_batches(held)
    say(f"{len(train)} training sequences of length {corpus.max_seq_length}; student {student.num_parameters():,} "
        f"parameters; {settings.method}: {' + '.join(distiller.active('general'))}")
    trainer = Trainer(args, trained_modules(student, distiller),
                      D.Batcher(train, args.batch_size, seed=args.seed),
                      distill_step(student, teacher, distiller, "general"),
                      lambda: heldout_losses(student, teacher, distiller, held, args.batch_size),
                      lambda folder: save_student(folder, student, distiller, tok), device=run.device,
                      settings=result_settings(settings))
    return trainer.train(resume=run.resume)


# ========================================================================= augmentation


def mlm_head_step(model):
    """step_fn training only the masked-LM head over a frozen encoder (eval mode, no dropout).

    The MiniLM teacher ships without an MLM head, and augmentation needs masked-word
    candidates. Training the head alone (transform, LayerNorm, output bias; the decoder is
    the frozen word embeddings) costs one encoder forward per batch and borrows everything
    the teacher knows about context; a student-sized BERT pre-trained here from scratch
    would propose mostly frequent words.
    """

    @weighs_labelled_tokens  # the masked-LM loss is a mean over labelled tokens
    def step_fn(batch, scale, labelled_scale):
        model.bert.eval()
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], labels=batch["labels"],
                    only_labelled=True)
        model.backward(dloss=labelled_scale, head_only=True)
        return {"loss": out.loss}

    return step_fn


def train_mlm_head(settings: AugmentSettings, corpus: CorpusSettings, tokenizer) -> BertForMaskedLM:
    """The teacher's encoder with a masked-LM head trained for settings.mlm_steps (saved to <output_dir>/mlm-head)."""
    head_dir = Path(settings.output_dir) / "mlm-head"
    say(f"== training a masked-LM head on the frozen {settings.teacher} encoder ({settings.mlm_steps} steps) -> "
        f"{head_dir}")
    mlm = BertForMaskedLM.from_pretrained(checkpoint.resolve_model_path(settings.teacher), seed=settings.seed)
    train, held = pretraining_data(tokenizer, corpus, BERT_MASKING, settings.seed)
    # augment always trains its head afresh: a previous head's checkpoints are replaced, never mixed in
    args = TrainArgs(output_dir=str(head_dir), max_steps=settings.mlm_steps, batch_size=32, lr=1e-3,
                     warmup_ratio=0.05, weight_decay=0.0, seed=settings.seed, progress=settings.progress, log_steps=10,
                     overwrite_output_dir=True)
    Trainer(args, {"cls.predictions.": mlm.lm_head}, D.Batcher(train, 32, seed=settings.seed), mlm_head_step(mlm),
            lambda: evaluate_mlm(mlm, held), lambda folder: mlm.save_pretrained(folder, tokenizer=tokenizer)).train()
    return mlm


SAMPLES = 2  # training sentences whose augmentations the augment command prints, to eyeball the candidates


def sample_sentences(files: D.TaskFiles, n: int = SAMPLES) -> list[str]:
    """The first `n` texts of the training file being augmented (its first text column)."""
    if files.by_name(files.train):
        table = D.read_table(files.train)
        text, _, _ = D.resolve_columns(table, files.columns)
        return [str(record[text]).strip() for _, record in table.rows[:n]]
    return [e.text_a for e in D.read_examples(files.task, files.train)[:n]]


def augment(data: TaskDataSettings, settings: AugmentSettings, corpus: CorpusSettings = CorpusSettings()) -> dict:
    """TinyBERT data augmentation of the task's training file into <output_dir>.

    A GLUE task's train.tsv (or --train-file in its layout) becomes train_aug.tsv in the same
    layout; your own data (--train-file, read by column names) becomes train_aug.jsonl with the
    same columns, read back by distill-task with the same column flags. Uses data.task,
    data.data, data.train_file, the column flags and data.max_train_examples. Returns {"file",
    "rows", "samples"}: samples holds a few augmentations of the file's first two sentences, to
    eyeball the candidates. Your own data's copies are written as the sentences are (case and
    spacing kept, Augmenter's keep_spelling); a GLUE file's as the reference writes them.
    """
    from .augment import Augmenter, GloveNeighbours, MLMCandidates, augment_table, augment_tsv  # GloVe: slow import

    columns = D.Columns(data.text_column, data.text_pair_column, data.label_column)
    files = D.task_files(data.task, data_dir=data.data, train_file=data.train_file, columns=columns)
    if files.train is None:
        raise DataError("augment reads a training file: give --train-file (or --task for a GLUE task's train.tsv)")
    tok = tokenizer_for(settings.teacher, settings.vocab)
    if settings.candidates == "glove":
        mlm = None
    elif settings.mlm:
        mlm = BertForMaskedLM.from_pretrained(checkpoint.resolve_model_path(settings.mlm))
    else:
        mlm = train_mlm_head(settings, corpus, tok)
    candidates = None if mlm is None else MLMCandidates(mlm, tok, k=settings.k)
    own = files.by_name(files.train)
    augmenter = Augmenter(candidates, GloveNeighbours(), k=settings.k, p=settings.p, n_aug=settings.n_aug,
                          seed=settings.seed, keep_spelling=own)
    limit = data.max_train_examples or None
    if own:
        out = Path(settings.output_dir) / "train_aug.jsonl"
        rows = augment_table(files.train, out, augmenter, columns, max_examples=limit, progress=settings.progress)
    else:
        out = Path(settings.output_dir) / "train_aug.tsv"
        rows = augment_tsv(files.task, files.train, out, augmenter, max_examples=limit, progress=settings.progress)
    return {"file": str(out), "rows": rows,
            "samples": {s: augmenter.augment(s)[:4] for s in sample_sentences(files)}}


# ============================================================ stage 2: task distillation


INTER_EPOCHS_DEFAULT = next(f.default for f in _fields(TaskDistillSettings) if f.name == "inter_epochs")


def _stage_length(steps: int, epochs: float) -> str:
    return f"{steps} steps" if steps else f"{epochs:g} epoch{'s' if epochs != 1 else ''}"


def task_distiller(student_config, teacher_config, s: TaskDistillSettings, seed: int) -> Distiller:
    """The Distiller of a task stage: s.method with its options (--alpha/--beta as the method's weights)."""
    weights = METHODS[s.method].weights(s.alpha, s.beta)
    return Distiller(student_config, teacher_config, method=s.method, strategy=s.mapping, weights=weights,
                     temperature=s.temperature, relation_heads=s.relation_heads or None,
                     relation_layer=s.relation_layer or None, seed=seed)


def prediction_cache(teacher, distiller: Distiller, s: TaskDistillSettings, device: str) -> TeacherCache | None:
    """A TeacherCache for the prediction stage when asked for and possible (small targets, the CPU backend)."""
    if not s.cache_teacher or not distiller.cacheable("prediction"):
        return None
    if device != "numpy":
        say("teacher outputs are not cached on the GPU (a lookup needs the ids on the host)")
        return None
    return TeacherCache(teacher, distiller, "prediction")


def task_distillation(task: str | D.TaskSpec, teacher, student, train: D.EncodedExamples, dev, tokenizer,
                      settings: TaskDistillSettings, training: TrainArgs = TrainArgs(**TASK_DISTILL_TRAINING),
                      run: RunOptions = RunOptions(), fit_dense_from=None) -> dict:
    """Stage 2: intermediate layers (2a, skipped when no steps or epochs) then the prediction layer (2b).

    dev: the dev set, or dev sets by metric suffix (evaluation.evaluate); the main one selects the student.
    training: how every stage optimises (each stage's own TrainArgs: `settings.stage_args`).

    Writes <output_dir>/intermediate/, prediction/ (checkpoints, metrics.jsonl, best/) and
    student/ (the best dev checkpoint, which is the student handed over; student/last/: the student
    at the end of training, as finetune's last/). fit_dense_from: a
    stage-1 student folder whose fit_dense to continue (see the module docstring).
    Returns {"best_dev", "history" (the prediction stage's), "folder", "model"}.
    """
    spec = D.get_task(task)
    label_classifier(student, spec)  # the saved student's config.json names the task's classes
    for model in (teacher, student):
        D.check_fits(train, model)  # --max-length against both models' position embeddings
    out, s = Path(training.output_dir), settings
    distiller = task_distiller(student.config, teacher.config, s, training.seed)
    if fit_dense_from and distiller.fit_dense is not None and checkpoint.load_fit_dense(
            distiller.fit_dense, fit_dense_from, on_mismatch=s.fit_dense_mismatch):
        say(f"fit_dense continues from {fit_dense_from}")
    for m in (teacher, student, distiller):
        m.to(run.device)
    save = lambda folder: save_student(folder, student, distiller, tokenizer)
    modules = trained_modules(student, distiller)
    asked = s.inter_steps > 0 or s.inter_epochs != INTER_EPOCHS_DEFAULT  # the default is for methods that have it
    if not distiller.active("intermediate"):
        if asked:
            say(f"method {s.method} has no intermediate-layer stage: --inter-steps/--inter-epochs are not used")
    elif s.inter_epochs > 0 or s.inter_steps > 0:
        say(f"== {s.method}: the intermediate-layer stage ({_stage_length(s.inter_steps, s.inter_epochs)}), then the "
            f"prediction stage ({_stage_length(s.pred_steps, s.pred_epochs)})")
        args = s.stage_args(training, "intermediate")
        Trainer(args, modules, D.Batcher(train, args.batch_size, seed=args.seed),
                distill_step(student, teacher, distiller, "intermediate"), None, save,
                device=run.device, settings=result_settings(s)).train(resume=run.resume)
    args = s.stage_args(training, "prediction", metric_for_best=spec.main_metric)
    cache = prediction_cache(teacher, distiller, s, run.device)
    # seed + 1: stage 2b sees the examples in another order than 2a
    trainer = Trainer(args, modules, D.Batcher(train, args.batch_size, seed=args.seed + 1),
                      distill_step(student, teacher, distiller, "prediction", cache),
                      lambda: evaluate(student, spec, dev), save, device=run.device, settings=result_settings(s),
                      extra_state=cache)  # the cache is saved with each checkpoint: an exact resume
    state = trainer.train(resume=run.resume)
    if cache is not None:
        say(f"teacher outputs: {cache.misses} computed, {cache.hits} reused from the cache")
    best = BertForSequenceClassification.from_pretrained(out / "prediction" / "best", num_labels=spec.num_labels)
    if world().is_root:  # the folder convention: the best handed over, the last beside it in last/
        best.save_pretrained(out / "student", tokenizer=tokenizer)
        student.save_pretrained(out / "student" / LAST, tokenizer=tokenizer)
    return {"best_dev": state.best_metric, "history": state.history, "folder": str(out / "student"), "model": best}


def finetune_teacher(task: str | D.TaskSpec, train: D.EncodedExamples, tokenizer, settings: TaskDistillSettings,
                     training: TrainArgs = TrainArgs(**TASK_DISTILL_TRAINING), run: RunOptions = RunOptions()):
    """The MiniLM-L6 teacher fine-tuned on `train` (teacher_epochs, teacher_lr), saved to <output_dir>/teacher."""
    spec = D.get_task(task)
    teacher = BertForSequenceClassification.from_pretrained(checkpoint.resolve_model_path(DEFAULT_TEACHER),
                                                            num_labels=spec.num_labels)
    label_classifier(teacher, spec)  # config.json names the classes
    say(f"== fine-tuning the MiniLM-L6 teacher on {len(train)} {spec.name} examples")
    train_classifier(teacher.to(run.device), spec, train, None, tokenizer, settings.stage_args(training, "teacher"),
                     resume=run.resume, device=run.device, settings={"teacher": DEFAULT_TEACHER})
    return teacher.eval()


def pipeline(data: TaskDataSettings, settings: TaskDistillSettings,
             training: TrainArgs = TrainArgs(**TASK_DISTILL_TRAINING), run: RunOptions = RunOptions()) -> dict:
    """Teacher (settings.teacher, or MiniLM-L6 fine-tuned here) -> student -> task distillation -> results.

    training: how every stage optimises and where the run is written (training.output_dir);
    run: --resume and the device. Writes and returns results.json's content: "teacher" and
    "student" (report.describe), "student_folder", "best_dev", "wall_s", and report.compare's
    "retained", "speedup_b1", "speedup_b32". `report.results_table(results)` is the table the
    command line prints.
    """
    t0 = time.perf_counter()
    tok = tokenizer_for(settings.teacher or DEFAULT_TEACHER, settings.vocab)
    if settings.teacher:
        teacher = load_teacher(settings.teacher)  # its classes and their order come from its config.json
        spec, train, dev = load_task_data(data, tok, model=model_labels(teacher, settings.teacher), seed=training.seed)
    else:
        spec, train, dev = load_task_data(data, tok, seed=training.seed)
        teacher = finetune_teacher(spec, train, tok, settings, training, run)
    student = build_student(settings.student, spec.num_labels, tok, training.seed, teacher)
    say(f"== distilling into a student of {student.num_parameters():,} parameters ({settings.student})")
    kind, _ = parse_student_spec(settings.student)
    res = task_distillation(spec, teacher, student, train, dev, tok, settings, training, run,
                            fit_dense_from=settings.student if kind == "folder" else None)
    if not world().is_root:  # rank 0 describes both models (their latency wants the machine to itself)
        return world().broadcast(None)
    results = {"task": spec.name, "teacher": describe(teacher, spec, dev),
               "student": describe(res["model"], spec, dev),
               "student_folder": res["folder"], "best_dev": res["best_dev"],
               "wall_s": round(time.perf_counter() - t0, 1)}
    results.update(compare(results["teacher"], results["student"]))
    results["student"].update(class_report(res["model"], spec, dev[""]))  # per class, and the confusion matrix
    baseline = regression_baseline(spec, train, dev)
    if baseline:
        results["baseline"] = baseline
    write_results(training.output_dir, results, (data, settings, training, run))  # with the model cards
    return world().broadcast(results)
