import pytest
import torch

from minigpt.data import get_batch, make_splits, read_corpus, split_documents, split_train_val
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer


def test_documents_are_split_at_blank_lines():
    assert split_documents("a b.\nc d.\n\n\ne f.\n") == ["a b. c d.", "e f."]


def test_train_and_validation_share_no_document():
    documents = [f"document number {i} ." for i in range(35)]
    train, val = split_train_val(documents)
    assert len(val) == 3 and len(train) == 32
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(documents)


def test_batches_are_windows_with_targets_shifted_by_one():
    data = torch.arange(100)
    x, y = get_batch(data, 8, 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)


def test_read_corpus_names_a_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_corpus(tmp_path / "nope.txt")


def test_read_corpus_names_the_byte_offset_of_non_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(UserError, match=r"latin1.txt is not UTF-8 text \(byte 3 is 0xe9\)"):
        read_corpus(path)


def test_read_corpus_rejects_an_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("  \n\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty"):
        read_corpus(path)


def test_a_corpus_shorter_than_one_window_is_a_user_error():
    text = "\n\n".join(f"short doc {i}." for i in range(12))
    tokenizer = WordTokenizer.from_corpus(text)
    with pytest.raises(UserError, match="fewer than one context window"):
        make_splits(text, tokenizer, block_size=64)
