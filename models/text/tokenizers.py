"""Tokenizers for the GPT: characters (the P3 reference) and byte-level BPE.

Both share one small interface (``encode``, ``decode``, ``vocab_size``,
``add_special_tokens``, ``save``) and are stored as plain JSON (no pickle), so a
checkpoint folder or an MLflow model carries its tokenizer.

ChatML's special tokens are single ids in both; the character tokenizer can fall
back to UTF-8 bytes (``<0xNN>`` tokens) so that any text, Korean included, encodes
even when its characters were never seen in training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from models.text.word_tokenizer import WordTokenizer

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHATML_SPECIALS = [IM_START, IM_END]


def _byte_token(b: int) -> str:
    return f"<0x{b:02X}>"


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: list[str], specials: list[str] | None = None, byte_fallback: bool = False):
        # ids: characters first (sorted, as nanoGPT), then byte tokens, then specials
        self.chars = list(chars)
        self.byte_fallback = byte_fallback
        self.specials = list(specials or [])
        self._build()

    @classmethod
    def train(cls, text: str, **kwargs) -> CharTokenizer:
        return cls(sorted(set(text)), **kwargs)

    def _build(self) -> None:
        self.itos = list(self.chars)
        if self.byte_fallback:
            self.itos += [_byte_token(b) for b in range(256)]
        self.itos += self.specials
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self._byte0 = len(self.chars)  # id of <0x00> when byte_fallback
        self._special_re = (
            re.compile("(" + "|".join(re.escape(s) for s in sorted(self.specials, key=len, reverse=True)) + ")")
            if self.specials
            else None
        )

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def add_chars(self, text: str) -> list[str]:
        """Append unseen characters (before byte and special tokens: ids of those shift)."""
        new = sorted(set(text) - set(self.chars) - set(self.specials))
        self.chars += new
        self._build()
        return new

    def add_special_tokens(self, tokens: list[str]) -> list[int]:
        self.specials += [t for t in tokens if t not in self.specials]
        self._build()
        return [self.stoi[t] for t in tokens]

    def token_id(self, token: str) -> int:
        return self.stoi[token]

    def _encode_plain(self, text: str, out: list[int]) -> None:
        for ch in text:
            i = self.stoi.get(ch) if ch not in self.specials else None
            if i is not None and i < len(self.chars):
                out.append(i)
            elif self.byte_fallback:
                out.extend(self._byte0 + b for b in ch.encode("utf-8"))
            else:
                raise KeyError(f"character {ch!r} not in the vocabulary (byte_fallback is off)")

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        out: list[int] = []
        parts = self._special_re.split(text) if (allow_special and self._special_re) else [text]
        for part in parts:
            if part in self.specials and allow_special:
                out.append(self.stoi[part])
            elif part:
                self._encode_plain(part, out)
        return out

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        pieces: list[str] = []
        pending = bytearray()  # byte tokens of one character arrive one at a time
        n_chars, n_bytes = len(self.chars), (256 if self.byte_fallback else 0)
        for i in ids:
            i = int(i)
            if n_chars <= i < n_chars + n_bytes:
                pending.append(i - n_chars)
                continue
            if pending:
                pieces.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
            if i >= n_chars + n_bytes and skip_special:
                continue
            pieces.append(self.itos[i])
        if pending:
            pieces.append(pending.decode("utf-8", errors="replace"))
        return "".join(pieces)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars, "specials": self.specials, "byte_fallback": self.byte_fallback}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        return cls(d["chars"], d.get("specials"), d.get("byte_fallback", False))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")


class BPETokenizer:
    """Byte-level BPE trained offline with Hugging Face ``tokenizers`` (every byte is in the alphabet)."""

    kind = "bpe"

    def __init__(self, tok):
        self.tok = tok

    @classmethod
    def train(cls, text: str, vocab_size: int = 512, specials: list[str] | None = None) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        # add_prefix_space=False: decode(encode(s)) == s exactly
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
            special_tokens=list(specials or []),
            show_progress=False,
        )
        # in chunks of lines: the trainer counts words per item, a 1 MB string in one item is slow
        lines = text.splitlines(keepends=True)
        tok.train_from_iterator(("".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)), trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    @property
    def specials(self) -> list[str]:
        return [t.content for t in self.tok.get_added_tokens_decoder().values() if t.special]

    def add_special_tokens(self, tokens: list[str]) -> list[int]:
        self.tok.add_special_tokens(tokens)
        return [self.tok.token_to_id(t) for t in tokens]

    def token_id(self, token: str) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise KeyError(token)
        return i

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        if not allow_special and self.specials:
            raise NotImplementedError("BPETokenizer always parses its special tokens")
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.tok.to_str())}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(json.dumps(d["tokenizer"])))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")


Tokenizer = CharTokenizer | BPETokenizer | WordTokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    return {"char": CharTokenizer, "bpe": BPETokenizer, "word": WordTokenizer}[d["kind"]].from_dict(d)


def load_tokenizer(path: str | Path) -> Tokenizer:
    return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
