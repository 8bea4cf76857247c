"""The checks of notebook 01's exercises: the notebook calls them, and so does
tests/test_exercises_nb123.py (which also proves each one fails on plausible wrong answers).

A failing check says what kind of mistake it sees (a shortest match, an [UNK] in the middle
of a word, unweighted pair counts, ...) and shows your own output, never the expected one.
"""
import collections
import tempfile
from pathlib import Path

from minibert.wordpiece import WordpieceTokenizer
from minibert.wordpiece_trainer import count_words, train_wordpiece_vocab

# A toy vocabulary where greedy longest-match and other plausible rules give different answers.
TOY_VOCAB = {"un", "una", "##aff", "##ffa", "##able", "##ble", "##a", "##b", "##l", "##e", "snow", "##man", "x", "##x"}  # "##x": 101 x's would spell without the length limit
TOY_WORDS = ["unaffable", "una", "unable", "snowman", "snow☃man", "xa", "x" * 101]


def _spells(word, pieces):
    return "".join(p[2:] if i and p.startswith("##") else p for i, p in enumerate(pieces)) == word


def _wordpiece_problem(word, got, expected, vocab):
    """What is wrong with `got` for `word` (expected is the right answer, never shown)."""
    if not isinstance(got, list) or not all(isinstance(p, str) for p in got):
        return f"return a list of strings (got {type(got).__name__})"
    if len(word) > 100:
        return f"a word of {len(word)} characters must be ['[UNK]'] without searching"
    if expected == ["[UNK]"]:
        if "[UNK]" in got:
            return (f"{word!r}: you gave {got}; when the search gets stuck the whole word is one [UNK], "
                    "nothing else")
        return f"{word!r}: you gave {got}, but the search gets stuck in this word: what should happen then?"
    if "[UNK]" in got:
        return f"{word!r}: you gave {got}, but every position of this word has a piece that matches"
    if not _spells(word, got):
        return f"{word!r}: your pieces {got} do not spell the word (a piece after the first starts with '##')"
    if any(p not in vocab for p in got):
        return f"{word!r}: {[p for p in got if p not in vocab]} are not in the vocabulary"
    if any(len(g) < len(e) for g, e in zip(got, expected)):
        return f"{word!r}: you gave {got}; at some position a longer piece is in the vocabulary (longest first)"
    return f"{word!r}: you gave {got}, which is not the greedy longest-match answer"


def check_wordpiece_word(wordpiece_word, bert_vocab, words=()):
    """wordpiece_word(word, vocab) must give the library's pieces: toy words, then `words` with BERT's vocabulary."""
    for vocab, cases, which in ((TOY_VOCAB, TOY_WORDS, "the toy vocabulary"), (bert_vocab, words, "BERT's vocabulary")):
        library = WordpieceTokenizer(vocab)
        for word in cases:
            expected, got = library.tokenize_word(word), wordpiece_word(word, vocab)
            assert got == expected, f"with {which}: " + _wordpiece_problem(word, got, expected, vocab)
    print(f"correct: {len(TOY_WORDS)} toy words and {len(words)} words with BERT's vocabulary")


# ------------------------------------------------------------------------------ BPE merges

# The toy counts of the exercise: "hug" and "pug" share "##u ##g", "pun" and "bun" "##u ##n".
TOY_COUNTS = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5, "gnu": 3}
REAL_MERGES = 40  # merges compared with the library on a real book (Alice in Wonderland)


def library_merges(word_counts, num_merges):
    """The first `num_merges` tokens train_wordpiece_vocab learns from these word counts (via a temporary file)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "words.txt"
        path.write_text("\n".join(" ".join([w] * n) for w, n in word_counts.items()), encoding="utf-8")
        alphabet = sorted({c for w in word_counts for c in w})
        vocab = train_wordpiece_vocab([path], 5 + 2 * len(alphabet) + num_merges, min_frequency=1,
                                      show_progress=False)
    return vocab[5 + 2 * len(alphabet):]


def _merges_problem(got, expected, word_counts):
    if not isinstance(got, list) or not all(isinstance(t, str) for t in got):
        return f"return the list of merged tokens, in the order learned (got {type(got).__name__})"
    if len(got) != len(expected):
        return f"asked for {len(expected)} merges, you returned {len(got)}"
    first = next(i for i, (g, e) in enumerate(zip(got, expected)) if g != e)
    if any("##" in t[1:] for t in got):
        return "a merged token has '##' inside it: 't' + '##h' is 'th', and '##h' + '##e' is '##he'"
    if not any(t.startswith("##") for t in got) and any(t.startswith("##") for t in expected):
        return "none of your tokens starts with '##': spell a word as its first character, then '##' characters"
    unweighted = dict.fromkeys(word_counts, 1)
    if got == _reference_merges(unweighted, len(got)):
        return "your pair counts ignore how often each word occurs: weight every pair by its word's count"
    if got == _merges_counted_once(word_counts, len(got)):
        return "you count the pairs once, at the start: count them again after every merge"
    return (f"merge {first + 1} differs: you merged into {got[first]!r} (the most frequent pair, weighted by word "
            f"counts; ties go to the smallest pair of strings)")


def check_bpe_merges(bpe_merges, book):
    """bpe_merges(word_counts, num_merges) -> the merged tokens in order, against the library's trainer."""
    for counts, n, what in ((TOY_COUNTS, 6, "the toy counts"),
                            (count_words([book]), REAL_MERGES, f"the words of {Path(book).name}")):
        counts = {w: c for w, c in counts.items() if len(w) <= 100}
        expected = library_merges(counts, n)
        got = bpe_merges(dict(counts), n)
        assert got == expected, f"on {what}: " + _merges_problem(got, expected, counts)
    print(f"correct: the toy counts, and the first {REAL_MERGES} merges on {Path(book).name} match the library")


# Two wrong ways of learning merges, for naming the mistake (not the exercise's answer: see
# solutions/nb01.py for a readable one).
def _pairs(spelled, counts):
    pairs = collections.Counter()
    for word, symbols in spelled.items():
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += counts[word]
    return pairs


def _merge(symbols, a, b):
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
            out.append(a + b[2:]); i += 2
        else:
            out.append(symbols[i]); i += 1
    return out


def _spell(word_counts):
    return {w: [c if i == 0 else "##" + c for i, c in enumerate(w)] for w in word_counts}


def _reference_merges(word_counts, num_merges):
    spelled, merges = _spell(word_counts), []
    for _ in range(num_merges):
        pairs = _pairs(spelled, word_counts)
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p], p))
        spelled = {w: _merge(s, a, b) for w, s in spelled.items()}
        merges.append(a + b[2:])
    return merges


def _merges_counted_once(word_counts, num_merges):
    spelled = _spell(word_counts)
    pairs = _pairs(spelled, word_counts)
    return [a + b[2:] for a, b in sorted(pairs, key=lambda p: (-pairs[p], p))[:num_merges]]
