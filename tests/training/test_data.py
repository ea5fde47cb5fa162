"""Data: the split is deterministic and by name, streams are contiguous and resume exactly, bad paths fail clearly."""

from __future__ import annotations

import random

import numpy as np
import pytest

from titans_memory.training import data as D


def _text_of(corpus, docs, sep=b"\0") -> bytes:
    return b"".join(corpus.read(d) + sep for d in docs)


def test_split_is_by_hash_of_the_name_not_the_order():
    docs = [D.Document(f"f{i}.txt", 0, 10) for i in range(200)]
    train, held = D.split_documents(docs, 0.1)
    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)
    train2, held2 = D.split_documents(shuffled, 0.1)
    assert set(held) == set(held2) and set(train) == set(train2)
    assert set(train).isdisjoint(held) and len(train) + len(held) == 200
    assert 8 <= len(held) <= 35  # about 10% of 200
    assert all(D._unit_hash(d.key) < 0.1 for d in held)


def test_split_never_leaves_a_set_empty():
    docs = [D.Document("a", 0, 5), D.Document("b", 0, 5)]
    for fraction in (1e-9, 0.999999):
        train, held = D.split_documents(docs, fraction)
        assert len(train) == 1 and len(held) == 1


def test_folder_corpus_skips_binary_and_hidden_and_reads_every_text_file(tmp_path, kit):
    folder = kit.write_corpus(tmp_path / "c", n_files=5)
    (folder / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (folder / ".hidden.txt").write_text("secret")
    corpus = D.file_corpus(folder, 0.3)
    names = {d.source for d in corpus.train + corpus.held_out}
    assert names == {f"doc{i:02d}.txt" for i in range(5)} | {"sub/nested.txt"}
    assert corpus.read(D.Document("sub/nested.txt", 0, 8)) == b"def f(x)"


def test_large_files_become_pieces_and_a_small_single_file_splits_its_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "PIECE_BYTES", 100)
    big = tmp_path / "big.txt"
    big.write_text("x" * 1050)
    corpus = D.file_corpus(big, 0.3)
    pieces = sorted(corpus.train + corpus.held_out, key=lambda d: d.start)
    assert [(d.start, d.end) for d in pieces] == [(s, min(s + 100, 1050)) for s in range(0, 1050, 100)]
    small = tmp_path / "small.txt"
    small.write_text("abcdefghij")
    corpus = D.file_corpus(small, 0.3)
    assert corpus.train == (D.Document("", 0, 7),) and corpus.held_out == (D.Document("", 7, 10),)
    assert corpus.read(corpus.held_out[0]) == b"hij"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("missing", None, r"data path '.*missing' does not exist"),
        ("empty.txt", b"", r"data file .* holds no text"),
        ("binary.bin", b"\x00\xff" * 50, r"data file .* holds no text"),
        ("one-byte.txt", b"x", r"too short to split"),
    ],
)
def test_bad_paths(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        D.file_corpus(path, 0.1)


def test_folder_without_text(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=r"data folder .* holds no text files"):
        D.open_corpus(str(tmp_path), 0.1)


def test_stdlib_corpus_is_python_source_and_stable():
    a = D.stdlib_corpus(0.05)
    b = D.stdlib_corpus(0.05)
    assert a.fingerprint() == b.fingerprint()
    assert len(a.train) > 100 and len(a.held_out) > 5
    assert all(d.source.endswith(".py") and "site-packages" not in d.source for d in a.train + a.held_out)


def test_stream_is_its_share_of_documents_concatenated(kit):
    corpus = D.file_corpus(kit.corpus, 0.2)
    tok = D.ByteTokenizer()
    n_streams, index = 3, 1
    stream = D.TokenStream(corpus, tok, index, n_streams, seed=5)
    order = D.epoch_order(len(corpus.train), 5, 0)
    share = [corpus.train[i] for i in order[index::n_streams]]
    expected = np.frombuffer(_text_of(corpus, share), dtype=np.uint8)
    got = [stream.segment(50) for _ in range(len(expected) // 50 - 1)]
    for a, b in zip(got, got[1:], strict=False):
        assert a[-1] == b[0]  # each segment starts with the previous one's last token
    flat = np.concatenate([got[0]] + [g[1:] for g in got[1:]])
    np.testing.assert_array_equal(flat, expected[: len(flat)])


def test_streams_wrap_into_the_next_epoch_in_a_new_order(kit):
    corpus = D.file_corpus(kit.corpus, 0.2)
    tok = D.ByteTokenizer()
    stream = D.TokenStream(corpus, tok, 0, 1, seed=0)
    total = len(_text_of(corpus, corpus.train))
    stream.segment(total)  # the whole first epoch (and one token of the second)
    assert stream.position.epoch == 1
    assert not np.array_equal(D.epoch_order(len(corpus.train), 0, 0), D.epoch_order(len(corpus.train), 0, 1))


def test_stream_resumes_from_its_position(kit):
    corpus = D.file_corpus(kit.corpus, 0.2)
    tok = D.ByteTokenizer()
    a = D.TokenStream(corpus, tok, 2, 4, seed=1)
    for _ in range(7):
        a.segment(123)
    b = D.TokenStream(corpus, tok, 2, 4, seed=1, position=D.StreamPosition.from_list(a.position.to_list()))
    for _ in range(20):
        np.testing.assert_array_equal(a.segment(97), b.segment(97))


def test_more_streams_than_documents(tmp_path, kit):
    folder = kit.write_corpus(tmp_path / "c", n_files=2)
    corpus = D.file_corpus(folder, 0.3)
    streams = [D.TokenStream(corpus, D.ByteTokenizer(), i, 8, seed=0) for i in range(8)]
    assert all(len(s.segment(40)) == 41 for s in streams)


def test_bad_positions():
    with pytest.raises(ValueError, match="4 integers"):
        D.StreamPosition.from_list([1, 2, 3])
    with pytest.raises(ValueError, match="out of range"):
        D.StreamPosition.from_list([0, -1, 0, 0])


def test_held_out_tokens_and_counts(kit):
    corpus = D.file_corpus(kit.corpus, 0.2)
    tok = D.ByteTokenizer()
    held = D.held_out_tokens(corpus, tok, 500)
    np.testing.assert_array_equal(held, np.frombuffer(_text_of(corpus, corpus.held_out)[:500], dtype=np.uint8))
    counts = D.train_token_counts(corpus, tok)
    text = _text_of(corpus, corpus.train)
    np.testing.assert_array_equal(counts, np.bincount(np.frombuffer(text, dtype=np.uint8), minlength=256))


def test_byte_tokenizer_round_trip():
    tok = D.ByteTokenizer()
    text = "héllo, wörld ✓"
    ids = tok.encode(text)
    assert tok.byte_count(ids) == len(text.encode()) and tok.decode(ids) == text
    assert tok.vocab_size == 256 and tok.separator == 0
    assert D.load_tokenizer(None).name == "bytes"


def test_hugging_face_dataset_by_name(tmp_path):
    """``hf:NAME``: a dataset folder of JSON lines (no download); runs where ``datasets`` is installed."""
    pytest.importorskip("datasets", reason="datasets is optional: uv run --with datasets pytest tests/training/test_data.py")
    import json

    folder = tmp_path / "ds"
    folder.mkdir()
    train_rows = [{"text": f"row {i} " + "abc " * i, "id": i} for i in range(10)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    (folder / "validation.jsonl").write_text(json.dumps({"text": "held out", "id": 99}) + "\n")
    corpus = D.open_corpus(f"hf:{folder}", 0.1)
    assert len(corpus.train) == 10 and len(corpus.held_out) == 1
    assert corpus.read(corpus.train[3]) == train_rows[3]["text"]
    tok = D.ByteTokenizer()
    np.testing.assert_array_equal(D.held_out_tokens(corpus, tok, 100), tok.encode("held out\0"))
    stream = D.TokenStream(corpus, tok, 0, 2, seed=0)
    assert len(stream.segment(30)) == 31
