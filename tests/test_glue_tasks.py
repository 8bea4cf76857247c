"""The GLUE tasks the shared data does not hold (QQP, MNLI, QNLI), read from small files in their
real layouts; MNLI's two dev sets; a trained model's label order (the MNLI pitfall); fetching an
archive-pinned task with data/prepare_glue.py, offline."""
import hashlib
import importlib.util
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from minibert import BertConfig, BertForSequenceClassification
from minibert import data as D
from minibert.evaluation import evaluate, predict_encoded
from minibert.finetune import evaluate_folder, finetune
from minibert.settings import ModelSettings, TaskDataSettings
from minibert.settings import TrainArgs

SCRIPTS = Path(__file__).resolve().parent.parent / "data"

# The first lines of GLUE's files, as GLUE writes them (tabs; quotes are text, never CSV quoting).
QQP = {
    "train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                 "133273\t213221\t213222\tHow is the life of a math student? Could you describe your own "
                 "experiences?\tWhich level of prepration is enough for the exam jlpt5?\t0\n"
                 "402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1\n"
                 "360472\t364011\t490273\tWhat causes stool color to change to yellow?\tWhat can cause stool to come "
                 "out as little balls?\t0\n",
    "dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
               "201359\t303345\t303346\tWhy are African-Americans so beautiful?\tWhy are hispanics so beautiful?\t0\n"
               "263843\t69383\t380476\tI want to pursue PhD in Computer Science about social network, what is the "
               "open problem in social networks?\t\"I handle social media for a non-profit. Should I start going "
               "to social media networking events?\"\t0\n"
               "172974\t266948\t175089\tIs there a reason why we should travel alone?\tWhat are some reasons to "
               "travel alone?\t1\n",
}
_MNLI_HEAD = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2")
_PARSES = ("( ( The ( new rights ) ) ( are ( nice enough ) ) )\t( Everyone ( ( really likes ) ( the ( newest "
           "benefits ) ) ) )\t(ROOT (S (NP (DT The) (JJ new) (NNS rights)) (VP (VBP are) (ADJP (JJ nice) (RB "
           "enough)))))\t(ROOT (S (NP (NN Everyone)) (VP (ADVP (RB really)) (VBZ likes) (NP (DT the) (JJS newest) "
           "(NNS benefits)))))")
MNLI = {  # train: label1 and gold_label (12 fields); dev: label1..label5 and gold_label (16 fields)
    "train.tsv": f"{_MNLI_HEAD}\tlabel1\tgold_label\n"
                 f"0\t31193\t31193n\tgovernment\t{_PARSES}\tConceptually cream skimming has two basic dimensions - "
                 f"product and geography.\tProduct and geography are what make cream skimming work. \t"
                 f"neutral\tneutral\n"
                 f"1\t101457\t101457e\ttelephone\t{_PARSES}\tyou know during the season and i guess at at your level "
                 f"uh you lose them to the next level\tYou lose the things to the following level if the people "
                 f"recall.\tentailment\tentailment\n"
                 f"2\t134793\t134793e\tfiction\t{_PARSES}\tOne of our number will carry out your instructions "
                 f"minutely.\tA member of my team will execute your orders with immense precision.\tentailment\t"
                 f"entailment\n"
                 f"3\t37397\t37397c\tfiction\t{_PARSES}\tHow do you know? All this is their information again.\t"
                 f"This information belongs to them.\tcontradiction\tcontradiction\n",
    "dev_matched.tsv": f"{_MNLI_HEAD}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                       f"0\t63735\t63735n\tslate\t{_PARSES}\tThe new rights are nice enough\tEveryone really likes "
                       f"the newest benefits \tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n"
                       f"1\t91383\t91383c\tgovernment\t{_PARSES}\tThis site includes a list of all award winners and "
                       f"a searchable database of Government Executive articles.\tThe Government Executive articles "
                       f"housed on the website are not able to be searched.\tcontradiction\tcontradiction\t"
                       f"contradiction\tcontradiction\tcontradiction\tcontradiction\n",
    "dev_mismatched.tsv": f"{_MNLI_HEAD}\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                          f"0\t75290\t75290c\tletters\t{_PARSES}\tYour contribution helped make it possible for us to "
                          f"provide our students with a quality education.\tYour contributions were of no help with "
                          f"our students' education.\tcontradiction\tcontradiction\tcontradiction\tcontradiction\t"
                          f"contradiction\tcontradiction\n"
                          f"1\t133794\t133794c\tverbatim\t{_PARSES}\tThe answer has nothing to do with their cause, "
                          f"however, but with the simple fact that dictionaries are not exercises in bi-unique "
                          f"substitutability.\tDictionaries are indeed exercises in bi-unique substitutability.\t"
                          f"contradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\tcontradiction\n"
                          f"2\t3628\t3628c\tverbatim\t{_PARSES}\tBut it was hard.\tIt was easy.\tentailment\t"
                          f"contradiction\tcontradiction\tneutral\tcontradiction\tcontradiction\n",
}
QNLI = {
    "train.tsv": "index\tquestion\tsentence\tlabel\n"
                 "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it and most of the "
                 "seasons that followed, Digimon Tamers takes a darker and more realistic approach to its story.\t"
                 "not_entailment\n"
                 "1\tWhich missile batteries often have individual launchers several kilometres from one another?\t"
                 "When MANPADS is operated by specialists, batteries may have several dozen teams deploying separately "
                 "in small sections; self-propelled air defence guns may deploy in pairs.\tnot_entailment\n"
                 "2\tWhat two things does Popper argue Tarski's theory involves in an evaluation of truth?\tHe bases "
                 "this interpretation on the fact that examples such as the one described above refer to two things: "
                 "assertions and the facts to which they refer.\tentailment\n",
    "dev.tsv": "index\tquestion\tsentence\tlabel\n"
               "0\tWhat came into force after the new constitution was herald?\tAs of that day, the new constitution "
               "heralding the Second Republic came into force.\tentailment\n",
}


def write_task(root: Path, folder: str, files: dict) -> Path:
    (root / folder).mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / folder / name).write_text(text, encoding="utf-8")
    return root / folder


@pytest.fixture
def glue_root(tmp_path, monkeypatch, data_dir):
    """A data root holding QQP, MNLI and QNLI fixtures, found as any data root is, and BERT's vocabulary."""
    for folder, files in (("QQP", QQP), ("MNLI", MNLI), ("QNLI", QNLI)):
        write_task(tmp_path, folder, files)
    (tmp_path / "bert-base-uncased").mkdir()
    (tmp_path / "bert-base-uncased" / "vocab.txt").symlink_to(data_dir / "bert-base-uncased" / "vocab.txt")
    monkeypatch.setenv("MINIBERT_DATA", str(tmp_path))
    return tmp_path


def test_qqp_mnli_qnli_read_in_their_real_layouts(glue_root):
    qqp = D.read_glue("qqp", glue_root / "QQP" / "dev.tsv")
    assert [e.label for e in qqp] == [0, 0, 1] and [e.line for e in qqp] == [2, 3, 4]
    assert qqp[1].text_b.startswith('"I handle social media') and qqp[1].text_b.endswith('events?"')  # tabs only
    train = D.read_glue("mnli", glue_root / "MNLI" / "train.tsv")  # 12 fields: the gold label is the last
    assert [e.label for e in train] == [2, 1, 1, 0]  # contradiction, entailment, neutral
    assert train[0] == D.InputExample("Conceptually cream skimming has two basic dimensions - product and geography.",
                                      "Product and geography are what make cream skimming work.", 2, 2)
    # 16 fields: the gold label, not label1 (row 3's annotators split, its gold label is contradiction)
    assert [e.label for e in D.read_glue("mnli", glue_root / "MNLI" / "dev_mismatched.tsv")] == [0, 0, 0]
    qnli = D.read_glue("QNLI", glue_root / "QNLI" / "train.tsv")
    assert [e.label for e in qnli] == [1, 1, 0] and qnli[2].text_a.startswith("What two things does Popper")
    bad = write_task(glue_root, "BAD", {"dev.tsv": MNLI["train.tsv"].replace("\tcontradiction\tcontradiction\n",
                                                                             "\tcontradiction\tnonsense\n")})
    with pytest.raises(D.UnknownLabelError, match=r"BAD/dev\.tsv:5: label 'nonsense' is not one of "
                                                  r"\['contradiction', 'entailment', 'neutral'\]"):
        D.read_glue("mnli", bad / "dev.tsv")


def test_a_missing_header_is_an_error_not_a_lost_row(glue_root, data_dir):
    sts = (data_dir / "STS-B" / "dev.tsv").read_text()
    headerless = write_task(glue_root, "NOHEAD", {"qqp.tsv": QQP["dev.tsv"].split("\n", 1)[1],
                                                  "sts.tsv": sts.split("\n", 1)[1]})
    with pytest.raises(ValueError, match=r"qqp\.tsv:1: the first line holds a label \('0'\) where the task's files "
                                         r"have a header line; is the header missing\?"):
        D.read_glue("qqp", headerless / "qqp.tsv")
    with pytest.raises(ValueError, match=r"sts\.tsv:1: the first line holds a label \('5\.000'\)"):
        D.read_glue("sts-b", headerless / "sts.tsv")


def tiny_classifier(num_labels, seed=0):
    return BertForSequenceClassification(BertConfig.from_preset("tiny", vocab_size=30522), num_labels=num_labels,
                                         seed=seed)


def test_mnli_is_scored_on_matched_and_mismatched_dev_sets(glue_root, tok):
    spec, train, dev = D.load_task_sets("mnli", tok, max_length=48)
    assert list(dev) == ["", "_mm"] and len(dev[""]) == 2 and len(dev["_mm"]) == 3 and len(train) == 4
    model = tiny_classifier(3)
    metrics = evaluate(model, spec, dev)
    assert list(metrics) == ["acc", "acc_mm"]
    for suffix in dev:
        expect = np.mean(predict_encoded(model, dev[suffix]).argmax(-1) == dev[suffix].labels)
        assert metrics["acc" + suffix] == pytest.approx(expect)
    # D.load_task_data is the main (matched) set alone
    assert D.load_task_data("mnli", tok, max_length=48)[2].labels.tolist() == dev[""].labels.tolist()
    # finetune evaluates both and names the classes in the processors' order
    out = glue_root / "run"
    summary = finetune(ModelSettings("tiny"), TaskDataSettings("mnli", max_length=48),
                       TrainArgs(output_dir=str(out), max_steps=2, batch_size=4, eval_steps=2, progress=False))
    assert set(summary["final"]) == {"step", "acc", "acc_mm"}
    assert json.loads((out / "config.json").read_text())["id2label"] == {
        "0": "contradiction", "1": "entailment", "2": "neutral"}
    assert set(evaluate_folder(ModelSettings(str(out)), TaskDataSettings("mnli"))) == {
        "task", "model", "examples", "examples_mm", "acc", "acc_mm", "per_class", "confusion_matrix"}


def test_a_model_s_own_label_order_is_respected(glue_root, tok):
    """The MNLI pitfall: a checkpoint trained on the Hugging Face glue dataset orders its classes
    entailment, neutral, contradiction; scoring it with the processors' ids would be wrong."""
    hf = D.ModelLabels(("ENTAILMENT", "NEUTRAL", "CONTRADICTION"), "hf-mnli")  # case does not matter
    spec = D.match_labels(D.TASKS["mnli"], hf)
    assert spec.label_list == ("entailment", "neutral", "contradiction") and spec.id2label == hf.names
    assert [e.label for e in D.read_glue(spec, glue_root / "MNLI" / "train.tsv")] == [1, 0, 0, 2]
    assert D.match_labels(D.TASKS["sst-2"], D.ModelLabels(("1", "0"), "m")).id2label == ("1", "0")  # file strings
    assert D.match_labels(D.TASKS["sst-2"], D.ModelLabels(("LABEL_0", "LABEL_1"), "m")) is D.TASKS["sst-2"]
    with pytest.raises(ValueError, match=r"m has the labels \['LABEL_0', 'LABEL_1'\], but task 'mnli' has "
                                         r"\['contradiction', 'entailment', 'neutral'\]"):
        D.match_labels(D.TASKS["mnli"], D.ModelLabels(("LABEL_0", "LABEL_1"), "m"))
    with pytest.raises(ValueError, match="m is a regression \\(one output\\), but task 'qnli' is a classification"):
        D.match_labels(D.TASKS["qnli"], D.ModelLabels(None, "m"))
    # end to end: a folder saved in the HF order scores as the same model with the processors' order
    model = tiny_classifier(3, seed=4)
    model.named_parameters()["classifier.bias"][...] = [0.0, 0.0, 100.0]  # always its row 2: contradiction
    model.config.set_labels(["entailment", "neutral", "contradiction"])
    model.save_pretrained(glue_root / "hf-order")
    reordered = tiny_classifier(3, seed=4)
    perm = [2, 0, 1]  # processors' id -> the HF model's row: contradiction, entailment, neutral
    for name in ("classifier.weight", "classifier.bias"):
        reordered.named_parameters()[name][...] = model.named_parameters()[name][perm]
    reordered.config.set_labels(["contradiction", "entailment", "neutral"])
    reordered.save_pretrained(glue_root / "glue-order")
    a = evaluate_folder(ModelSettings(str(glue_root / "hf-order")), TaskDataSettings("mnli"))
    b = evaluate_folder(ModelSettings(str(glue_root / "glue-order")), TaskDataSettings("mnli"))
    # every answer is contradiction: 1 of the 2 matched rows, all 3 mismatched ones
    assert (a["acc"], a["acc_mm"]) == (b["acc"], b["acc_mm"]) == (0.5, 1.0)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(f"_prep_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_prepare_glue_fetches_an_archive_pinned_task(tmp_path, capsys, tok, monkeypatch):
    """MNLI as prepare_glue fetches it, offline: a zip at a file:// URL, its SHA-256 pinned, members
    unpacked into MNLI/; a wrong archive writes nothing; a --from copy says it is unverified."""
    common, glue = _load_script("_common"), _load_script("prepare_glue")
    assert [f.sources[0].url for f in glue.FILES if f.path.startswith("MNLI/")] == [f"{glue.GLUE}/MNLI.zip"] * 3
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in MNLI.items():
            z.writestr(f"MNLI/{name}", text)
    (tmp_path / "MNLI.zip").write_bytes(buf.getvalue())
    base = tmp_path.as_uri()
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    files = [glue._from_archive("MNLI", split, "MNLI.zip", sha, base=base)
             for split in ("train", "dev_matched", "dev_mismatched")]
    out = tmp_path / "data"
    assert common.main(files, "test", ["--out", str(out)]) == 0
    assert "(archive sha256 verified)" in capsys.readouterr().out
    for name, text in MNLI.items():
        assert (out / "MNLI" / name).read_text(encoding="utf-8") == text
    monkeypatch.setenv("MINIBERT_DATA", str(out))
    assert D.load_task_sets("mnli", tok)[2]["_mm"].labels.tolist() == [0, 0, 0]  # ready to use
    # a different archive at the URL: refused, nothing written
    wrong = [glue._from_archive("MNLI", "train", "MNLI.zip", "0" * 64, base=base)]
    assert common.main(wrong, "test", ["--out", str(tmp_path / "other")]) == 1
    assert f"checksum mismatch for {base}/MNLI.zip: expected sha256 {'0' * 64}" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    # --from copies the unpacked file, says that it is not verified, and gives its checksum
    assert common.main(files[:1], "test", ["--from", str(out), "--out", str(tmp_path / "copy")]) == 0
    printed = capsys.readouterr().out
    train_sha = hashlib.sha256(MNLI["train.tsv"].encode()).hexdigest()
    assert f"NOT verified: only its archive's sha256 is pinned; this file's is {train_sha}" in printed
