"""The explain page (minibert/explainer.py, explainer.js): its numbers are the models' and the
distillation losses', and it works in a real browser, offline.

The numbers are checked in Python against the models run afresh and against the Distiller's
own losses. The page is opened by headless Chromium (Debian's `chromium`, driven by Playwright
through its path; .ci/run installs it): switching layer and head must redraw the matrix with
exactly the embedded probabilities, hovering a token must keep only its lines, nothing may be
fetched from the network, and a screenshot must show something. Without Chromium or Playwright
the browser tests skip, except in CI (CI=true), where they fail.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil

import numpy as np
import pytest

from minibert import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer, explain
from minibert import checkpoint
from minibert.distill import Distiller, FitDense
from minibert.explainer import Explanation
from minibert.inference import TextClassifier
from minibert.train import main

WORDS = ["the", "cat", "sat", "on", "mat", "a", "gripping", "film", "dull", "and", "lifeless", "."]
TEXTS = ["the cat sat on the mat .", "a gripping film", "dull and lifeless"]
DATA_SCRIPT = re.compile(r'<script type="application/json" id="minibert-data">(.*?)</script>', re.S)


def config(layers, hidden, heads):
    return BertConfig(vocab_size=5 + len(WORDS), hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=32,
                      initializer_range=0.5)  # large weights: peaked attention, so a new head looks different


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A 4-layer teacher (16 wide, 4 heads), a 2-layer student (8 wide, 4 heads) with a fit_dense,
    a 2-head student without one, and an encoder: small random models sharing one vocabulary."""
    root = tmp_path_factory.mktemp("explain")
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizer(root / "vocab.txt")
    made = {}
    for name, cfg, seed in (("teacher", config(4, 16, 4), 0), ("student", config(2, 8, 4), 1),
                            ("two_heads", config(2, 8, 2), 2)):
        model = BertForSequenceClassification(cfg, num_labels=2, seed=seed)
        model.config.set_labels(["negative", "positive"])
        made[name] = model.save_pretrained(root / name, tokenizer=tok)
    fit_dense = FitDense(8, 16, 3, seed=3)  # as a distillation run leaves it next to its student
    checkpoint.save_fit_dense(made["student"], fit_dense)
    made["encoder"] = BertModel(config(2, 8, 4), seed=4).save_pretrained(root / "encoder", tokenizer=tok)
    made["tok"] = tok
    return made


def page_data(text: str) -> dict:
    """The numbers a page embeds (what its script draws)."""
    (payload,) = DATA_SCRIPT.findall(text)
    return json.loads(payload)


def encode(tok, text):
    return np.array([tok.encode(text)["input_ids"]])  # (1, T)


# ----------------------------------------------------------------------------- the numbers


def test_the_embedded_attention_and_predictions_are_the_models(folders):
    data = page_data(explain(str(folders["student"]), TEXTS, str(folders["teacher"])).html())
    assert [s["text"] for s in data["sentences"]] == TEXTS
    assert [m["role"] for m in data["models"]] == ["student", "teacher"]
    for column, name in zip(data["models"], ("student", "teacher")):
        model = BertForSequenceClassification.from_pretrained(folders[name])
        clf = TextClassifier(model, folders["tok"])
        for sentence, example in zip(data["sentences"], column["examples"]):
            ids = encode(folders["tok"], sentence["text"])
            assert sentence["tokens"] == folders["tok"].convert_ids_to_tokens(ids[0].tolist())
            out = model(ids)
            probs = [a[0] for a in out.attentions]  # L x (NH, T, T)
            assert len(example["attention"]) == model.config.num_hidden_layers
            for drawn, expected in zip(example["attention"], probs):
                np.testing.assert_allclose(np.array(drawn), expected, rtol=0, atol=1e-6)
            np.testing.assert_allclose(example["prediction"]["scores"], clf.scores(out.logits)[0], atol=1e-6)
            assert example["prediction"]["labels"] == ["negative", "positive"]


def test_per_layer_losses_add_up_to_the_distillers_on_the_same_sentence(folders):
    page = explain(str(folders["student"]), TEXTS, str(folders["teacher"]))
    comparison = page.data["comparison"]
    assert comparison["mapping"] == [2, 4] and comparison["relation_heads"] == 4
    assert comparison["fit_dense"].endswith("fit_dense.safetensors")
    student = BertForSequenceClassification.from_pretrained(folders["student"])
    teacher = BertForSequenceClassification.from_pretrained(folders["teacher"])
    tinybert = Distiller(student.config, teacher.config)
    assert checkpoint.load_fit_dense(tinybert.fit_dense, folders["student"])
    minilm = Distiller(student.config, teacher.config, method="minilm")
    minilmv2 = Distiller(student.config, teacher.config, method="minilmv2")
    for text, losses in zip(TEXTS, comparison["examples"]):
        ids = encode(folders["tok"], text)
        s_out, t_out = student(ids), teacher(ids)
        # TinyBERT's intermediate stage: L_att and L_hid are sums over the mapped layers, L_emb the pair (0, 0)
        expected = tinybert(s_out, t_out, stage="intermediate")
        assert sum(losses["attention_mse"]) == pytest.approx(float(expected["att"]), rel=1e-5)
        assert sum(losses["hidden_mse"][1:]) == pytest.approx(float(expected["hid"]), rel=1e-5)
        assert losses["hidden_mse"][0] == pytest.approx(float(expected["emb"]), rel=1e-5)
        # MiniLM reads the last layers, MiniLMv2's vv the student's last against the teacher's last (the mapping's)
        assert losses["att_kl"][-1] == pytest.approx(float(minilm(s_out, t_out, stage="intermediate")["att_kl"]),
                                                     rel=1e-5)
        assert losses["value_kl"][-1] == pytest.approx(float(minilmv2(s_out, t_out, stage="intermediate")["vv"]),
                                                       rel=1e-5)


def test_a_pipelines_student_folder_finds_the_fit_dense_its_run_kept(folders, tmp_path):
    # pipeline: <run>/student/ is a copy of <run>/prediction/best/, which also holds the trained fit_dense
    shutil.copytree(folders["student"], tmp_path / "prediction" / "best")
    shutil.copytree(folders["student"], tmp_path / "student", ignore=shutil.ignore_patterns(checkpoint.FIT_DENSE_NAME))
    page = explain(str(tmp_path / "student"), TEXTS, str(folders["teacher"]))
    assert page.data["comparison"]["fit_dense"] == str(tmp_path / "prediction" / "best" / checkpoint.FIT_DENSE_NAME)
    assert page.data["comparison"]["examples"] == explain(str(folders["student"]), TEXTS, str(folders["teacher"])
                                                          ).data["comparison"]["examples"]


def test_a_model_alone_is_one_column_and_an_encoder_predicts_nothing(folders):
    data = explain(str(folders["encoder"]), "a gripping film").data
    assert data["comparison"] is None and len(data["models"]) == 1
    assert data["models"][0]["role"] == "model" and data["models"][0]["examples"][0]["prediction"] is None
    data = explain(str(folders["teacher"]), ["dull"]).data
    assert data["models"][0]["examples"][0]["prediction"]["kind"] == "softmax"


def test_a_long_sentence_is_cut_and_the_cut_is_said(folders, capsys):
    data = explain(str(folders["encoder"]), [TEXTS[0], "dull"], max_length=5).data
    assert data["sentences"][0]["tokens"] == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert np.array(data["models"][0]["examples"][0]["attention"]).shape == (2, 4, 5, 5)
    assert "note: cut 1 of 2 sentences to 5 tokens" in capsys.readouterr().err


def test_shapes_that_forbid_a_loss_give_none_and_say_why(folders):
    page = explain(str(folders["two_heads"]), TEXTS[:1], str(folders["teacher"]), mapping="top")
    comparison = page.data["comparison"]
    assert comparison["mapping"] == [3, 4]
    losses = comparison["examples"][0]
    assert losses["attention_mse"] == [None, None] and losses["att_kl"] == [None, None]  # 2 heads vs 4
    assert losses["hidden_mse"] == [None, None, None]  # no fit_dense, and 8 wide vs 16
    assert "widths differ" in comparison["fit_dense"]
    assert all(v is not None for v in losses["value_kl"])  # 4 relation heads divide both widths


def test_models_in_memory_take_their_tokenizer_and_a_fit_dense(folders):
    student = BertForSequenceClassification.from_pretrained(folders["student"])
    teacher = BertForSequenceClassification.from_pretrained(folders["teacher"])
    fit_dense = FitDense(8, 16, 3, seed=3)
    page = explain(student, TEXTS, teacher, tokenizer=folders["tok"], fit_dense=fit_dense, names=("S", "T"))
    from_folders = explain(str(folders["student"]), TEXTS, str(folders["teacher"]))
    assert [m["name"] for m in page.data["models"]] == ["S", "T"]
    assert page.data["comparison"]["examples"] == from_folders.data["comparison"]["examples"]
    with pytest.raises(ValueError, match="needs its tokenizer"):
        explain(student, TEXTS)


def test_a_teacher_with_another_vocabulary_is_refused(folders, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(folders["teacher"], other)
    vocab = (other / "vocab.txt").read_text().split("\n")
    (other / "vocab.txt").write_text("\n".join([*vocab[:5], *reversed(vocab[5:-1]), ""]))
    with pytest.raises(ValueError, match="tokenises the sentences differently"):
        explain(str(folders["student"]), TEXTS, str(other))


def test_the_real_minilm_alone(data_dir):
    page = explain("minilm-l6", ["the bank of the river"])
    model = BertModel.from_pretrained("minilm-l6")
    ids = encode(checkpoint.load_tokenizer("minilm-l6"), "the bank of the river")
    column = page.data["models"][0]
    assert (column["layers"], column["heads"], len(page.data["sentences"][0]["tokens"])) == (6, 12, ids.shape[1])
    for drawn, expected in zip(column["examples"][0]["attention"], model(ids).attentions):
        np.testing.assert_allclose(np.array(drawn), expected[0], rtol=0, atol=1e-6)


def test_the_command_writes_one_self_contained_file(folders, tmp_path, capsys):
    out = tmp_path / "explain.html"
    main(["explain", "--model", str(folders["student"]), "--teacher", str(folders["teacher"]), *TEXTS,
          "--output", str(out)])
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert page_data(text)["sentences"][2]["text"] == TEXTS[2]
    # nothing to fetch: no external script, style, image or font (the browser test watches the requests)
    assert not re.search(r"""(src|href)\s*=|<link|@import|url\(""", text)
    with pytest.raises(SystemExit) as info:
        main(["explain", "--model", str(folders["student"]), "--output", str(out)])
    assert info.value.code == 1 and "give one or more sentences" in capsys.readouterr().err


def test_jupyter_shows_the_same_page_in_an_iframe(folders):
    page = explain(str(folders["student"]), TEXTS, str(folders["teacher"]))
    shown = page._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and "&lt;script type=&quot;application/json&quot;" in shown
    assert isinstance(page, Explanation) and ".save(path)" in repr(page)  # what a plain-text viewer shows


# ----------------------------------------------------------------------------- the browser


def chromium_path() -> str | None:
    return os.environ.get("MINIBERT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("the browser tests need Chromium and Playwright: .ci/run installs both")
        pytest.skip("no chromium or playwright here (apt-get install chromium; pip install -e '.[test]')")
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        chromium = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page_file(folders, tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "explain.html"
    explain(str(folders["student"]), TEXTS, str(folders["teacher"])).save(path)
    return path


def open_page(browser, path):
    """The file in a fresh offline context; every URL it asks for and every script error, recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
    requested, errors = [], []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(path.as_uri())
    return page, requested, errors


def drawn_matrix(page, column: int) -> np.ndarray:
    """The matrix as drawn: each cell's fill-opacity at its (query, key)."""
    read = "els => els.map(e => [+e.dataset.q, +e.dataset.k, +e.getAttribute('fill-opacity')])"
    cells = page.eval_on_selector_all(f"#matrix-{column} rect.cell", read)
    T = int(round(len(cells) ** 0.5))
    matrix = np.full((T, T), np.nan)
    for q, k, p in cells:
        matrix[int(q), int(k)] = p
    return matrix


def visible_lines(page, column: int) -> int:
    return page.eval_on_selector_all(f"#lines-{column} line.link",
                                     "els => els.filter(e => e.style.display !== 'none').length")


def test_switching_layer_and_head_redraws_the_embedded_attention(browser, page_file):
    data = page_data(page_file.read_text(encoding="utf-8"))
    page, requested, errors = open_page(browser, page_file)
    assert page.input_value("#layer-1") == "1"  # at the start too: S1 beside T2 = g(1)
    first = drawn_matrix(page, 0)
    np.testing.assert_allclose(first, data["models"][0]["examples"][0]["attention"][0][0], atol=1e-9)
    page.select_option("#layer-0", index=1)
    page.select_option("#head-0", index=2)
    second = drawn_matrix(page, 0)
    assert np.abs(second - first).max() > 0.05, "the map did not change"
    np.testing.assert_allclose(second, data["models"][0]["examples"][0]["attention"][1][2], atol=1e-9)
    # the teacher column followed the mapping: student layer 2 learns from teacher layer g(2) = 4, same head
    assert page.input_value("#layer-1") == "3" and page.input_value("#head-1") == "2"
    np.testing.assert_allclose(drawn_matrix(page, 1), data["models"][1]["examples"][0]["attention"][3][2], atol=1e-9)
    # another sentence: its tokens and its attention
    page.select_option("#sentence", index=1)
    assert page.eval_on_selector_all("#tokens .token", "els => els.map(e => e.textContent)") == \
        data["sentences"][1]["tokens"]
    np.testing.assert_allclose(drawn_matrix(page, 0), data["models"][0]["examples"][1]["attention"][1][2], atol=1e-9)
    assert not errors, errors
    assert all(url.startswith("file:") for url in requested), requested


def test_hovering_a_token_keeps_its_lines_and_the_losses_table_shows_the_sentence(browser, page_file):
    data = page_data(page_file.read_text(encoding="utf-8"))
    T = len(data["sentences"][0]["tokens"])
    page, requested, errors = open_page(browser, page_file)
    assert visible_lines(page, 0) == T * T
    page.hover("#lines-0 .query[data-q='2']")
    assert visible_lines(page, 0) == T
    assert page.get_attribute("#row-0", "visibility") == "visible"  # its row in the matrix, outlined
    page.mouse.move(1, 1)
    assert visible_lines(page, 0) == T * T
    rows = page.eval_on_selector_all("#losses tbody tr", "els => els.map(e => e.textContent)")
    losses = data["comparison"]["examples"][0]
    assert len(rows) == 2 + 2  # embeddings, S1, S2, the sum
    for value in (losses["hidden_mse"][1], losses["attention_mse"][0], losses["value_kl"][0]):
        assert page.evaluate("x => Number(x).toPrecision(4)", value) in rows[1]  # S1 <- T2, as the page formats it
    page.click("#losses tbody tr:nth-child(3)")  # S2: both columns move to the pair (S2, T4)
    assert page.input_value("#layer-0") == "1" and page.input_value("#layer-1") == "3"
    assert not errors, errors
    assert all(url.startswith("file:") for url in requested), requested


def test_a_screenshot_shows_the_page_and_a_model_alone_draws_one_column(browser, folders, tmp_path):
    import matplotlib.image

    path = tmp_path / "alone.html"
    explain(str(folders["teacher"]), TEXTS).save(path)
    page, requested, errors = open_page(browser, path)
    assert page.eval_on_selector_all("section.model", "els => els.length") == 1
    assert page.eval_on_selector_all("#mapping", "els => els.length") == 0
    png = page.screenshot(full_page=True)
    (tmp_path / "alone.png").write_bytes(png)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]  # (H, W, 3) in [0, 1]
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    not_white = (pixels < 0.95).any(axis=-1).mean()
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert not_white > 0.02 and colours > 50, (not_white, colours)
    assert not errors, errors
    assert all(url.startswith("file:") for url in requested), requested
