"""A word-level tokenizer whose unknown words are copy slots: the chat model's tokenizer.

A text is cut into *pieces* — words, numbers, names, single punctuation marks, the
newline — each remembering whether a space came before it, so ``decode(encode(s))``
gives ``s`` back (runs of spaces become one). A piece of the closed vocabulary (the
words of the question grammar, JSON's punctuation, the tools' names) is one id.
Every other piece — a series, a model, a metric, a number, a date — is a **copy
slot**: the k-th distinct unknown piece of the conversation is ``<copy k>`` wherever
it appears (question, tool call, tool result, answer), and the conversation's slot
table turns it back into its text. That is the positional-unknown copy of Luong et
al. 2015 ("Addressing the Rare Word Problem in Neural Machine Translation"): the model
copies a name by writing its slot, so a copied name is exact or wrong as a whole, never
misspelt; it cannot write a number that is not in the conversation either.

The slot ids also carry the piece's *shape* (``num``: digits and separators; ``low``:
lower-case letters and underscores; ``other``), a hint the model may use (a metric name
looks unlike a model's) without seeing the letters. Ids: specials, then the vocabulary's
pieces (each with and without a leading space), then the slots, then ``<unk>`` (a
conversation with more distinct unknown pieces than slots), each with and without the space.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_PIECE = re.compile(r"\n|[^\S\n]+|[{}\[\]\",?!;()]|[^\s{}\[\]\",?!;()]+")
_NUM = re.compile(r"[-+]?[\d.,:+\-]*\d[\d.,:+\-]*")
_LOW = re.compile(r"[a-z_]+")
SHAPES = ("num", "low", "other")
UNK = "<unk>"
_PUNCT = set('{}[]",:')


def pieces(text: str) -> list[tuple[bool, str]]:
    """(space before, piece) of a text; a leading ':' and a trailing '.', ':' or "'s" come off a word
    ("1.53." -> "1.53", "."; ':1' -> ':', '1'), so a name or a number is the same piece wherever it stands."""
    out: list[tuple[bool, str]] = []
    space = False
    for m in _PIECE.finditer(text):
        p = m.group()
        if p == "\n":
            out.append((False, p))
            space = False
        elif p.isspace():
            space = True
        else:
            while len(p) > 1 and p[0] == ":":  # JSON's '"d":1': the colon is punctuation, the number a piece
                out.append((space, ":"))
                p, space = p[1:], False
            tail = []
            while len(p) > 1 and p[-1] in ".:":
                tail.insert(0, p[-1])
                p = p[:-1]
            if len(p) > 2 and p.endswith(("'s", "’s")):
                tail.insert(0, p[-2:])
                p = p[:-2]
            out.append((space, p))
            out += [(False, t) for t in tail]
            space = False
    return out


def shape(piece: str) -> str:
    if _NUM.fullmatch(piece):
        return "num"
    return "low" if _LOW.fullmatch(piece) else "other"


def _key(space: bool, piece: str) -> str:
    return (" " if space else "") + piece


class WordTokenizer:
    kind = "word"
    copies_words = True  # encode/decode take the conversation's slot table

    def __init__(self, words: list[str], n_slots: int = 32, specials: list[str] | None = None):
        self.words = list(dict.fromkeys(words))
        self.n_slots = n_slots
        self.specials = list(specials or [])
        self._build()

    @classmethod
    def train(cls, texts: list[str], n_slots: int = 32, specials: list[str] | None = None) -> WordTokenizer:
        """The vocabulary: every piece of ``texts`` (the grammar's fixed words) that holds no digit (numbers are
        always copied, never generated), in order of first appearance."""
        words = [p for t in texts for _, p in pieces(t) if not any(c.isdigit() for c in p)]
        return cls(words, n_slots, specials)

    def _build(self) -> None:
        self.itos = list(self.specials)
        for w in self.words:
            self.itos += [w] if w == "\n" else [_key(False, w), _key(True, w)]
        self._slot0 = len(self.itos)
        self.itos += [_key(sp, f"<copy{k}:{s}>") for k in range(self.n_slots) for s in SHAPES for sp in (False, True)]
        self.itos += [UNK, _key(True, UNK)]
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self._special_re = (re.compile("(" + "|".join(re.escape(s) for s in sorted(self.specials, key=len, reverse=True))
                                       + ")") if self.specials else None)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def add_special_tokens(self, tokens: list[str]) -> list[int]:
        self.specials += [t for t in tokens if t not in self.specials]
        self._build()
        return [self.stoi[t] for t in tokens]

    def token_id(self, token: str) -> int:
        return self.stoi[token]

    def slot_id(self, k: int, piece: str, space: bool) -> int:
        return self._slot0 + (k * len(SHAPES) + SHAPES.index(shape(piece))) * 2 + int(space)

    def _piece_id(self, space: bool, p: str, slots: list[str], copy: bool = False) -> int:
        for variant in () if copy else (p, p.lower(), p.capitalize()):  # a known word in another case is that word
            i = self.stoi.get(_key(space, variant))
            if i is not None and i >= len(self.specials):
                return i
        if p not in slots:
            if len(slots) >= self.n_slots:
                return self.stoi[_key(space, UNK)]
            slots.append(p)
        return self.slot_id(slots.index(p), p, space)

    def encode(self, text: str, allow_special: bool = True, slots: list[str] | None = None,
               copy_values: bool = False, prefer_copies: bool = False) -> list[int]:
        """Ids of ``text``; ``slots``: the conversation's slot table, extended in place with its new unknown pieces.

        ``copy_values``: ``text`` is a JSON object (a tool's result) whose *values* are copied whole-piece even
        when they are words of the vocabulary (a verdict, a model called like a word): they are data, and the
        answer copies them; its keys and punctuation stay words. ``prefer_copies``: a piece the conversation
        already copied is its slot even when it is a word too (what the model writes: it copies the verdict it
        read, it does not guess it).
        """
        slots = [] if slots is None else slots
        out: list[int] = []
        parts = self._special_re.split(text) if (allow_special and self._special_re) else [text]
        for part in parts:
            if part in self.specials and allow_special:
                out.append(self.stoi[part])
            elif part:
                in_value = False  # inside a JSON value: after a ':' until the next ',' or '}'
                for sp, p in pieces(part):
                    if copy_values and p in (",", "}"):
                        in_value = False
                    copy = (in_value and p not in _PUNCT) or (prefer_copies and p in slots)
                    out.append(self._piece_id(sp, p, slots, copy))
                    if copy_values and p == ":" and not in_value:
                        in_value = True
        return out

    def decode(self, ids: list[int], skip_special: bool = False, slots: list[str] | None = None) -> str:
        """Text of ``ids``; a slot becomes its piece of ``slots`` (a slot the conversation never filled: ``<unk>``)."""
        slots = slots or []
        out = []
        for i in ids:
            i = int(i)
            if i < len(self.specials):
                if not skip_special:
                    out.append(self.itos[i])
                continue
            tok = self.itos[i]
            if self._slot0 <= i < self._slot0 + self.n_slots * len(SHAPES) * 2:
                k = (i - self._slot0) // (2 * len(SHAPES))
                out.append((" " if tok.startswith(" ") else "") + (slots[k] if k < len(slots) else UNK))
            else:
                out.append(tok)
        return "".join(out)

    def is_slot(self, i: int) -> bool:
        return self._slot0 <= int(i) < self._slot0 + self.n_slots * len(SHAPES) * 2

    def to_dict(self) -> dict:
        return {"kind": self.kind, "words": self.words, "n_slots": self.n_slots, "specials": self.specials}

    @classmethod
    def from_dict(cls, d: dict) -> WordTokenizer:
        return cls(d["words"], d["n_slots"], d.get("specials"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
