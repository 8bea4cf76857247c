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


def bpe_merges(word_counts, num_merges):
    """The first `num_merges` tokens BPE learns from {word: count}: spell each word as its first
    character and `##` characters, then repeatedly merge the most frequent adjacent pair (weighted by
    the words' counts; ties go to the smallest pair of strings) everywhere it occurs."""
    spelled = {w: [c if i == 0 else "##" + c for i, c in enumerate(w)] for w in word_counts}  # "the": t ##h ##e
    merges = []
    for _ in range(num_merges):
        pairs = {}
        for word, symbols in spelled.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] = pairs.get(pair, 0) + word_counts[word]
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent; on a tie the smallest pair
        merged = a + b[2:]  # b is a "##" continuation: t + ##h -> th, ##h + ##e -> ##he
        for word, symbols in spelled.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == (a, b):
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            spelled[word] = out
        merges.append(merged)
    return merges
