"""Training text that streams: documents, a deterministic train / held-out split, token streams.

Sources (``TrainConfig.data``):

* ``"stdlib"``: the ``.py`` files of Python's own standard library (``sysconfig``'s ``stdlib``
  path, without ``site-packages``): text every machine with Python has, no download;
* a text file or a folder (every text file below it, hidden ones skipped);
* ``"hf:NAME"`` or ``"hf:NAME:CONFIG"``: a Hugging Face ``datasets`` dataset (needs ``datasets``).

A *document* is a file, a byte range of a large file (pieces of ``PIECE_BYTES``), or a dataset
row. Documents go to the held-out set by a hash of their name, so the split is the same on every
machine and for every run, whatever the order in which files are listed.

Memory stays flat in the corpus size: only the list of document names is kept, and each stream
holds the tokens of its current document. A stream (:class:`TokenStream`) walks through its share
of the training documents, in an order shuffled per epoch by the seed, each document followed by
the separator token; its position (epoch, document, offset, last token) is a few integers, saved in
checkpoints so that a resumed run reads exactly what an uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PIECE_BYTES = 1 << 20  # files larger than this are split into documents of this many bytes
SEPARATOR_BYTE = 0  # byte-level models: NUL separates documents (it never occurs in text)
_SNIFF_BYTES = 8192  # bytes read to decide whether a file holds text


# --- tokenizers ---------------------------------------------------------------------------------
class ByteTokenizer:
    """Bytes as tokens: vocabulary 256, ``NUL`` between documents. No download, no dependency."""

    name = "bytes"
    vocab_size = 256
    separator = SEPARATOR_BYTE

    def encode(self, data: bytes | str) -> np.ndarray:
        """``(n,)`` int64 token ids: the UTF-8 bytes of a string, or the bytes themselves."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def byte_count(self, ids: Sequence[int] | np.ndarray) -> int:
        """Bytes of text the tokens stand for (one per token)."""
        return len(ids)


class HFTokenizer:
    """A Hugging Face tokenizer found locally (installed in the cache, or a folder); needs ``transformers``."""

    def __init__(self, name: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ValueError(
                f"tokenizer {name!r} needs transformers: pip install 'titans-miras[hf]' "
                "(leave tokenizer unset for bytes)"
            ) from None
        try:
            self._tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
        except Exception as err:  # noqa: BLE001 -- transformers raises many kinds; say which tokenizer
            raise ValueError(f"cannot load the tokenizer {name!r} from local files: {err}") from None
        self.name = name
        self.vocab_size = len(self._tok)
        sep = self._tok.eos_token_id
        if sep is None:
            sep = self._tok.sep_token_id
        if sep is None:
            raise ValueError(f"tokenizer {name!r} has no eos or sep token to separate documents")
        self.separator = int(sep)

    @property
    def hf(self):
        """The underlying ``transformers`` tokenizer (saved with checkpoints)."""
        return self._tok

    def encode(self, data: bytes | str) -> np.ndarray:
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        return np.asarray(self._tok.encode(data, add_special_tokens=False), dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self._tok.decode([int(i) for i in ids])

    def byte_count(self, ids: Sequence[int] | np.ndarray) -> int:
        """UTF-8 bytes of the decoded text: what bits per byte divides by."""
        return len(self.decode(ids).encode("utf-8"))


Tokenizer = ByteTokenizer | HFTokenizer


def load_tokenizer(name: str | None) -> Tokenizer:
    """Bytes for None (or ``"bytes"``), else a locally installed Hugging Face tokenizer."""
    if name is None or name == "bytes":
        return ByteTokenizer()
    return HFTokenizer(name)


# --- documents and corpora ----------------------------------------------------------------------
@dataclass(frozen=True)
class Document:
    """One document: bytes ``start .. end`` of the file ``source`` (a path), or row ``start`` of a dataset."""

    source: str
    start: int
    end: int

    @property
    def key(self) -> str:
        """The name the split hashes: stable across machines for the same relative path."""
        return f"{self.source}:{self.start}"


def _unit_hash(key: str) -> float:
    """A number in [0, 1) from ``key``, the same on every machine."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_documents(
    docs: Sequence[Document], held_out_fraction: float
) -> tuple[tuple[Document, ...], tuple[Document, ...]]:
    """Train and held-out documents: a document is held out when its key hashes below the fraction.

    Both sets are non-empty whenever there are two documents or more: if the hash leaves one set
    empty, the document with the lowest (highest) hash moves over.
    """
    if len(docs) < 2:
        raise ValueError("split_documents needs two documents or more")
    scores = [_unit_hash(d.key) for d in docs]
    train = [d for d, s in zip(docs, scores, strict=True) if s >= held_out_fraction]
    held = [d for d, s in zip(docs, scores, strict=True) if s < held_out_fraction]
    order = sorted(range(len(docs)), key=scores.__getitem__)
    if not held:
        held = [docs[order[0]]]
        train = [d for d in train if d != held[0]]
    if not train:
        train = [docs[order[-1]]]
        held = [d for d in held if d != train[0]]
    return tuple(train), tuple(held)


class Corpus:
    """Documents of one source, split into train and held-out, and a way to read each."""

    def __init__(self, name: str, train: Sequence[Document], held_out: Sequence[Document]) -> None:
        self.name = name
        self.train = tuple(train)
        self.held_out = tuple(held_out)

    def read(self, doc: Document) -> bytes | str:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hash of the document lists: a resumed run checks that it reads the same data."""
        h = hashlib.sha256()
        for group in (self.train, self.held_out):
            for d in group:
                h.update(f"{d.source}\0{d.start}\0{d.end}\n".encode())
            h.update(b"|")
        return h.hexdigest()[:16]


class FileCorpus(Corpus):
    """Text files under a root; document sources are paths relative to the root."""

    def __init__(self, name: str, root: Path, train, held_out) -> None:
        super().__init__(name, train, held_out)
        self.root = root

    def read(self, doc: Document) -> bytes:
        path = self.root / doc.source if doc.source else self.root
        with open(path, "rb") as fh:
            fh.seek(doc.start)
            return fh.read(doc.end - doc.start)


def _is_text(path: Path) -> bool:
    """A file holds text when its first bytes decode as UTF-8 and contain no NUL."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    if not head or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3  # a multi-byte character cut by the sniff window
    return True


def _not_utf8(path: Path) -> bool:
    """A file of text in another encoding (no NUL in its first bytes, but not UTF-8): worth a warning."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    return bool(head) and b"\0" not in head


def _pieces(rel: str, size: int) -> list[Document]:
    return [Document(rel, s, min(s + PIECE_BYTES, size)) for s in range(0, size, PIECE_BYTES)]


def _utf8_name(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def file_corpus(
    path: str | Path, held_out_fraction: float, *, pattern: str | None = None, name: str | None = None,
    warn: bool = True,
) -> FileCorpus:
    """A corpus of one text file or of every text file under a folder (``pattern``: a glob filter).

    Raises ValueError when the path does not exist or holds no text. In a folder, a file whose
    name or first bytes are not UTF-8 is skipped; ``warn``: say so on stderr, naming the files.
    """
    from titans_memory.validate import check_utf8_path, printable_path

    check_utf8_path(path, "data path")
    root = Path(path)
    if not root.exists():
        raise ValueError(f"data path {str(root)!r} does not exist")
    if root.is_file():
        if not _is_text(root):
            raise ValueError(f"data file {str(root)!r} holds no text (empty, binary or not UTF-8)")
        size = root.stat().st_size
        docs = _pieces("", size)
        if len(docs) == 1:  # one small file: its tail is held out
            cut = max(1, min(size - 1, round(size * (1 - held_out_fraction))))
            if size < 2:
                raise ValueError(f"data file {str(root)!r} is too short to split into train and held-out text")
            train, held = (Document("", 0, cut),), (Document("", cut, size),)
        else:
            train, held = split_documents(docs, held_out_fraction)
        return FileCorpus(name or str(root), root, train, held)
    if not root.is_dir():
        raise ValueError(f"data path {str(root)!r} is neither a file nor a folder")
    docs: list[Document] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in ("site-packages", "__pycache__"))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            full = Path(dirpath) / fname
            if pattern is not None and not full.match(pattern):
                continue
            if not full.is_file():
                continue
            if not _utf8_name(full):  # its name could not be recorded in the run's JSON
                skipped.append(printable_path(os.path.relpath(full, root)))
                continue
            if not _is_text(full):
                if _not_utf8(full):
                    skipped.append(printable_path(os.path.relpath(full, root)))
                continue
            rel = full.relative_to(root).as_posix()
            docs.extend(_pieces(rel, full.stat().st_size))
    if skipped and warn:
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        print(f"titans: skipped {len(skipped)} file(s) under {printable_path(root)} whose name or contents are not "
              f"UTF-8 text: {', '.join(skipped[:3])}{more}", file=sys.stderr)
    if not docs:
        what = f"files matching {pattern!r}" if pattern else "text files"
        raise ValueError(f"data folder {str(root)!r} holds no {what}")
    if len(docs) == 1:  # one file in the folder: split it like a single file
        only = docs[0]
        cut = max(1, min(only.end - 1, round(only.end * (1 - held_out_fraction))))
        if only.end < 2:
            raise ValueError(f"data folder {str(root)!r} holds too little text to split")
        return FileCorpus(name or str(root), root, [Document(only.source, 0, cut)], [Document(only.source, cut, only.end)])
    train, held = split_documents(docs, held_out_fraction)
    return FileCorpus(name or str(root), root, train, held)


def stdlib_corpus(held_out_fraction: float) -> FileCorpus:
    """The ``.py`` sources of this Python's standard library (no download)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return file_corpus(root, held_out_fraction, pattern="*.py", name=f"stdlib ({root})", warn=False)


class DatasetCorpus(Corpus):
    """Rows of a Hugging Face ``datasets`` dataset (memory-mapped Arrow, so memory stays flat)."""

    def __init__(self, name: str, splits: dict, column: str, train, held_out) -> None:
        super().__init__(name, train, held_out)
        self._splits = splits
        self._column = column

    def read(self, doc: Document) -> str:
        return self._splits[doc.source][doc.start][self._column] or ""


def dataset_corpus(spec: str, held_out_fraction: float) -> DatasetCorpus:
    """``hf:NAME[:CONFIG]``: the ``train`` split, held out from ``validation`` or ``test`` if present."""
    body = spec[3:]
    name, _, config = body.partition(":")
    if not name:
        raise ValueError(f"data {spec!r}: expected hf:NAME or hf:NAME:CONFIG")
    try:
        import datasets
    except ImportError:
        raise ValueError(f"data {spec!r} needs the datasets package: pip install datasets") from None
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as err:  # noqa: BLE001 -- datasets raises many kinds; name the dataset
        raise ValueError(f"cannot load the dataset {name!r}: {err}") from None
    if "train" not in loaded:
        raise ValueError(f"dataset {name!r} has no 'train' split (it has {sorted(loaded)})")
    train_split = loaded["train"]
    strings = [c for c, feat in train_split.features.items() if getattr(feat, "dtype", None) == "string"]
    column = "text" if "text" in strings else (strings[0] if strings else None)
    if column is None:
        raise ValueError(f"dataset {name!r} has no text column (columns: {list(train_split.features)})")
    held_name = next((s for s in ("validation", "test") if s in loaded), None)
    train_docs = [Document("train", i, i + 1) for i in range(len(train_split))]
    if held_name is not None:
        held_docs = [Document(held_name, i, i + 1) for i in range(len(loaded[held_name]))]
        if not train_docs or not held_docs:
            raise ValueError(f"dataset {name!r} has an empty train or {held_name} split")
    else:
        if len(train_docs) < 2:
            raise ValueError(f"dataset {name!r} holds fewer than two rows")
        train_docs, held_docs = split_documents(train_docs, held_out_fraction)
    return DatasetCorpus(spec, dict(loaded), column, train_docs, held_docs)


def open_corpus(data: str, held_out_fraction: float) -> Corpus:
    """The corpus ``TrainConfig.data`` names (see the module docstring)."""
    if data == "stdlib":
        return stdlib_corpus(held_out_fraction)
    if data.startswith("hf:"):
        return dataset_corpus(data, held_out_fraction)
    return file_corpus(data, held_out_fraction)


# --- token streams ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StreamPosition:
    """Where a stream is: document ``doc`` of its share in ``epoch``, ``offset`` tokens into it.

    ``last`` is the last token handed out (-1 before the first): the next segment starts with it,
    so that its first target follows on.
    """

    epoch: int = 0
    doc: int = 0
    offset: int = 0
    last: int = -1

    def to_list(self) -> list[int]:
        return [self.epoch, self.doc, self.offset, self.last]

    @classmethod
    def from_list(cls, values: Sequence[int]) -> StreamPosition:
        if len(values) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"a stream position is 4 integers [epoch, doc, offset, last], got {values!r}")
        epoch, doc, offset, last = values
        if epoch < 0 or doc < 0 or offset < 0 or last < -1:
            raise ValueError(f"stream position out of range: {values!r}")
        return cls(epoch, doc, offset, last)


def epoch_order(n_docs: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of the training documents in ``epoch`` (the same for every stream)."""
    return np.random.default_rng([seed, epoch]).permutation(n_docs)


class TokenStream:
    """Stream ``index`` of ``n_streams``: documents ``order[index::n_streams]`` of each epoch, in turn.

    Each document's tokens are followed by the tokenizer's separator, so documents are
    concatenated into one long contiguous text.
    """

    def __init__(
        self,
        corpus: Corpus,
        tokenizer: Tokenizer,
        index: int,
        n_streams: int,
        seed: int,
        position: StreamPosition | None = None,
    ) -> None:
        if not 0 <= index < n_streams:
            raise ValueError(f"stream index {index} out of range for {n_streams} streams")
        self.corpus, self.tokenizer = corpus, tokenizer
        self.index, self.n_streams, self.seed = index, n_streams, seed
        self._pos = position or StreamPosition()
        self._loaded: tuple[int, int] | None = None  # (epoch, doc) whose tokens are in _tokens
        self._tokens = np.empty(0, dtype=np.int64)

    @property
    def position(self) -> StreamPosition:
        return self._pos

    def _share(self, epoch: int) -> np.ndarray:
        order = epoch_order(len(self.corpus.train), self.seed, epoch)
        share = order[self.index :: self.n_streams]
        return share if len(share) else order[[self.index % len(order)]]  # more streams than documents

    def _load(self) -> None:
        epoch, doc = self._pos.epoch, self._pos.doc
        if self._loaded == (epoch, doc):
            return
        share = self._share(epoch)
        document = self.corpus.train[int(share[doc])]
        body = self.tokenizer.encode(self.corpus.read(document))
        self._tokens = np.concatenate([body, np.array([self.tokenizer.separator], dtype=np.int64)])
        self._loaded = (epoch, doc)

    def _take(self, n: int) -> np.ndarray:
        out: list[np.ndarray] = []
        while n > 0:
            self._load()
            epoch, doc, offset, _ = self._pos.to_list()
            piece = self._tokens[offset : offset + n]
            out.append(piece)
            n -= len(piece)
            offset += len(piece)
            if offset >= len(self._tokens):  # next document, next epoch
                doc, offset = doc + 1, 0
                if doc >= len(self._share(epoch)):
                    epoch, doc = epoch + 1, 0
            self._pos = StreamPosition(epoch, doc, offset, self._pos.last)
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def segment(self, length: int) -> np.ndarray:
        """``(length + 1,)`` tokens: the last token of the previous segment, then ``length`` new ones."""
        first = self._pos.last
        if first < 0:
            first = int(self._take(1)[0])
        body = self._take(length)
        self._pos = StreamPosition(self._pos.epoch, self._pos.doc, self._pos.offset, int(body[-1]))
        return np.concatenate([np.array([first], dtype=np.int64), body])


def held_out_tokens(corpus: Corpus, tokenizer: Tokenizer, n_tokens: int) -> np.ndarray:
    """The first ``n_tokens`` tokens of the held-out documents in their listed order (fewer if short)."""
    out: list[np.ndarray] = []
    have = 0
    for doc in corpus.held_out:
        body = tokenizer.encode(corpus.read(doc))
        piece = np.concatenate([body, np.array([tokenizer.separator], dtype=np.int64)])
        out.append(piece[: n_tokens - have])
        have += len(out[-1])
        if have >= n_tokens:
            break
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def train_token_counts(corpus: Corpus, tokenizer: Tokenizer, max_tokens: int | None = None) -> np.ndarray:
    """``(vocab,)`` counts of every token in the training documents (separators included), streamed."""
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    seen = 0
    for doc in corpus.train:
        body = tokenizer.encode(corpus.read(doc))
        counts += np.bincount(body, minlength=tokenizer.vocab_size)[: tokenizer.vocab_size]
        counts[tokenizer.separator] += 1
        seen += len(body) + 1
        if max_tokens is not None and seen >= max_tokens:
            break
    return counts
