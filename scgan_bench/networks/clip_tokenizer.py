"""CLIP's byte-pair tokenizer, reading OpenAI's merge list ``bpe_simple_vocab_16e6.txt.gz``.

Written from the CLIP paper's description (lower-cased byte-level BPE, 49,152 entries, start and end
tokens, 77 positions) and the vocabulary file's format: the first line is a header, the next 48,894 lines
are merges in priority order. Vocabulary: the 256 byte symbols, the same with an end-of-word mark
``</w>``, one entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>``.

Text is lower-cased, HTML entities undone and whitespace collapsed; ftfy's repair of mis-decoded text is
not applied and words are split with Python's ``re`` (letters ``[^\\W\\d_]``, single digits, runs of other
symbols), which equals OpenAI's ``regex`` pattern on ASCII text (the prompts scored here) and on most
other text; ``tests/test_clipiqa.py`` compares both on a list of strings.
"""
from __future__ import annotations

import gzip
import html
import re
from functools import lru_cache
from pathlib import Path

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_SPLIT = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+",
                    re.IGNORECASE)
N_MERGES = 49152 - 256 - 2


@lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """Each byte's printable stand-in: printable Latin-1 bytes map to themselves, the other 68 bytes to
    code points 256, 257, ... in byte order (insertion order = vocabulary order)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
            *range(ord("\u00ae"), ord("\u00ff") + 1)]
    out = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return out  # in vocabulary order: the kept bytes, then the others


class Tokenizer:
    """``tokenize(texts)`` -> rows of 77 ids: start, the text's BPE ids, end, zeros."""

    def __init__(self, vocab_file: Path | str) -> None:
        try:
            with gzip.open(vocab_file, "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise ValueError(f"{vocab_file}: not CLIP's gzipped merge list ({exc})") from None
        merges = [tuple(m.split()) for m in lines[1:N_MERGES + 1]]
        if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(f"{vocab_file}: expected {N_MERGES} merges of two symbols after the header line")
        symbols = list(byte_symbols().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.ids = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.bytes = byte_symbols()
        self._cache: dict[str, list[int]] = {}

    def _bpe(self, word: str) -> list[int]:
        if word in self._cache:
            return self._cache[word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        out = [self.ids[p] for p in parts]
        self._cache[word] = out
        return out

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` (no start / end tokens)."""
        text = re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip().lower()
        out: list[int] = []
        for word in _SPLIT.findall(text):
            out += self._bpe("".join(self.bytes[b] for b in word.encode("utf-8")))
        return out

    def tokenize(self, texts: list[str], context: int = 77):
        """An ``int64`` tensor ``len(texts) x context``; a text longer than ``context - 2`` ids is an error."""
        import torch

        rows = torch.zeros(len(texts), context, dtype=torch.long)
        for r, text in enumerate(texts):
            ids = [self.ids[SOT], *self.encode(text), self.ids[EOT]]
            if len(ids) > context:
                raise ValueError(f"text {text!r} is {len(ids)} tokens long, CLIP reads {context}")
            rows[r, :len(ids)] = torch.tensor(ids)
        return rows
