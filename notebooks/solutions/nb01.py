"""Reference solutions of notebook 01's exercises (WordPiece). Read them after trying."""


def wordpiece_word(word, vocab, unk="[UNK]", max_chars=100):
    """Greedy longest-match-first: the pieces of one word, or [unk] for the whole word."""
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):  # the longest candidate first
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk]  # stuck at `start`: the whole word is unknown, not just this piece
        pieces.append(piece)
        start = end
    return pieces
