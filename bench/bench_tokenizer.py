"""Tokenizer speed: minibert vs transformers (pure-Python and Rust-backed) vs tokenizers.

Every tokenizer encodes the same corpus one line at a time (the way a data loader or a
notebook calls it), with [CLS]/[SEP] and truncation to 512, starting from a freshly
built tokenizer, so minibert's chunk cache starts empty. Prints a markdown table of
MB/s (UTF-8 bytes of text) and tokens/s, and checks that all tokenizers produced the
same ids (a reference that silently yields [UNK]s would otherwise look fast).

    python bench/bench_tokenizer.py                      # WikiText-2 valid+test, uncased vocab
    python bench/bench_tokenizer.py --corpus sst2 --repeat 3

Rust-backed tokenizers run on one thread (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false).
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"          # before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from minibert.tokenizer import BertTokenizer  # noqa: E402


def data_root() -> Path:
    return Path(os.environ.get("MINIBERT_DATA", REPO.parent / "shared" / "data")).resolve()


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8-sig").replace("\r", "").split("\n")


def corpus_lines(name: str, root: Path) -> list[str]:
    """Non-empty lines of a corpus (the text column for the GLUE files)."""
    if name == "wikitext":
        lines = [l for split in ("valid", "test") for l in read_lines(root / "wikitext-2-raw" / f"wiki.{split}.raw")]
    elif name == "gutenberg":
        lines = [l for p in sorted((root / "gutenberg").glob("*.txt")) for l in read_lines(p)]
    elif name == "sst2":
        lines = [l.split("\t")[0] for l in read_lines(root / "SST-2" / "train.tsv")[1:] if l]
    else:
        raise SystemExit(f"unknown corpus {name!r}")
    return [l for l in lines if l.strip()]


def make_tokenizers(vocab_path: Path):
    """name -> (factory building a fresh tokenizer, function line -> ids)."""
    import transformers
    from tokenizers import BertWordPieceTokenizer

    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        # 5.x: BertTokenizer is Rust-backed and takes vocab= (a vocab_file= keyword is
        # silently ignored and gives all-[UNK] ids); the pure-Python one is BertTokenizerLegacy.
        python_cls, rust_cls = transformers.BertTokenizerLegacy, transformers.BertTokenizer
        python_make = lambda: python_cls(vocab_file=str(vocab_path))
        rust_make = lambda: rust_cls(vocab=str(vocab_path))
    else:
        python_cls, rust_cls = transformers.BertTokenizer, transformers.BertTokenizerFast
        python_make = lambda: python_cls(vocab_file=str(vocab_path))
        rust_make = lambda: rust_cls(vocab_file=str(vocab_path))

    def hf_encode(tok):
        return lambda line: tok(line, truncation=True, max_length=512)["input_ids"]

    def tk_make():
        tok = BertWordPieceTokenizer(str(vocab_path), lowercase=True)
        tok.enable_truncation(512)
        return tok

    return {
        "minibert BertTokenizer": (lambda: BertTokenizer(vocab_path),
                                   lambda tok: lambda line: tok.encode(line, max_length=512)["input_ids"]),
        f"transformers {python_cls.__name__} (pure Python)": (python_make, hf_encode),
        f"transformers {rust_cls.__name__} (Rust)": (rust_make, hf_encode),
        "tokenizers BertWordPieceTokenizer (Rust)": (tk_make, lambda tok: lambda line: tok.encode(line).ids),
        "minibert plain path (no cache)": (lambda: BertTokenizer(vocab_path), plain_encoder),
    }


def plain_encoder(tok: BertTokenizer):
    """minibert without its chunk cache: BasicTokenizer + WordPiece on the whole line."""
    basic, wordpiece, vocab = tok.basic_tokenizer, tok.wordpiece_tokenizer, tok.vocab

    def encode(line):
        ids = [vocab[p] for word in basic.tokenize(line) for p in wordpiece.tokenize_word(word)]
        return [tok.cls_token_id] + ids[:510] + [tok.sep_token_id]

    return encode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="wikitext", choices=["wikitext", "gutenberg", "sst2"])
    parser.add_argument("--vocab", type=Path, default=None, help="vocab.txt (default: bert-base-uncased)")
    parser.add_argument("--repeat", type=int, default=1, help="timed passes; the best is reported")
    args = parser.parse_args(argv)
    root = data_root()
    vocab_path = args.vocab or root / "bert-base-uncased" / "vocab.txt"
    lines = corpus_lines(args.corpus, root)
    megabytes = sum(len(l.encode("utf-8")) for l in lines) / 1e6

    import tokenizers
    import transformers
    print(f"corpus: {args.corpus}, {len(lines):,} lines, {megabytes:.2f} MB; vocab {vocab_path}")
    print(f"python {sys.version.split()[0]}, transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}; one line per call, max_length=512\n")

    results, reference = {}, None
    for name, (make, encoder) in make_tokenizers(vocab_path).items():
        best = float("inf")
        for _ in range(args.repeat):
            tok = make()  # fresh: no warm cache carried between passes
            encode = encoder(tok)
            start = time.perf_counter()
            ids = [encode(line) for line in lines]
            best = min(best, time.perf_counter() - start)
        n_tokens = sum(len(x) for x in ids)
        if reference is None:
            reference = ids
            unk_id = tok.unk_token_id
            n_unk = sum(x.count(unk_id) for x in ids)
            if n_unk > 0.05 * n_tokens:
                raise SystemExit(f"{name}: {n_unk} of {n_tokens} tokens are [UNK]; wrong vocabulary?")
        mismatches = sum(a != b for a, b in zip(ids, reference))
        results[name] = (best, n_tokens, mismatches)
        print(f"  {name}: {best:.2f} s", file=sys.stderr)

    python_name = next(n for n in results if "pure Python" in n)
    rust_name = next(n for n in results if n.startswith("transformers") and "Rust" in n)
    print("| tokenizer | seconds | MB/s | tokens/s | vs pure-Python | vs transformers Rust "
          "| lines differing from minibert |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, (seconds, n_tokens, mismatches) in results.items():
        print(f"| {name} | {seconds:.2f} | {megabytes / seconds:.2f} | {n_tokens / seconds:,.0f} | "
              f"{results[python_name][0] / seconds:.1f}x | {results[rust_name][0] / seconds:.2f}x | {mismatches} |")


if __name__ == "__main__":
    main()
