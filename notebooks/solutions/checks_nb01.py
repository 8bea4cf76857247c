"""The checks of notebook 01's exercises: the notebook calls them, and so does
tests/test_exercises_nb123.py (which also proves each one fails on a wrong answer)."""
from minibert.wordpiece import WordpieceTokenizer

# A toy vocabulary where greedy longest-match and other plausible rules give different answers.
TOY_VOCAB = {"un", "una", "##aff", "##ffa", "##able", "##ble", "##a", "##b", "##l", "##e", "snow", "##man", "x"}
TOY_CASES = {
    "unaffable": ["una", "##ffa", "##ble"],  # longest first piece wins, though "un ##aff ##able" also spells it
    "una": ["una"],
    "unable": ["una", "##ble"],
    "snowman": ["snow", "##man"],
    "snow☃man": ["[UNK]"],  # stuck at the snowman: the whole word, not one piece
    "xa": ["x", "##a"],
    "x" * 101: ["[UNK]"],  # over 100 characters: unknown without a search
}


def check_wordpiece_word(wordpiece_word, bert_vocab, words=()):
    """wordpiece_word(word, vocab) must give the library's pieces: toy cases, then `words` in BERT's vocabulary."""
    for word, expected in TOY_CASES.items():
        got = wordpiece_word(word, TOY_VOCAB)
        assert got == expected, f"{word[:20]!r} with the toy vocabulary: expected {expected}, got {got}"
    library = WordpieceTokenizer(bert_vocab)
    for word in words:
        expected = library.tokenize_word(word)
        got = wordpiece_word(word, bert_vocab)
        assert got == expected, f"{word!r} with BERT's vocabulary: expected {expected}, got {got}"
    print(f"correct: {len(TOY_CASES)} toy words and {len(words)} words with BERT's vocabulary")
