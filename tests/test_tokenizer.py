import json

import pytest

from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import SPECIAL_TOKENS, WordTokenizer, split_words

CORPUS = "The cat sat on the mat. The dog sat, too!\n\nA bird sang."


def test_split_words_lowercases_and_separates_punctuation():
    assert split_words("Hello, World.  Bye!") == ["hello", ",", "world", ".", "bye", "!"]


def test_special_tokens_come_first_and_frequent_words_next():
    tokenizer = WordTokenizer.from_corpus(CORPUS)
    assert tokenizer.id_to_token[:3] == list(SPECIAL_TOKENS)
    assert tokenizer.id_to_token[3] == "the"  # the most frequent word (3 times)


def test_encode_decode_round_trip_on_normalised_text():
    tokenizer = WordTokenizer.from_corpus(CORPUS)
    text = "the cat sat on the mat. the dog sat, too!"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode(tokenizer.decode(ids)) == ids


def test_unknown_words_map_to_unk():
    tokenizer = WordTokenizer.from_corpus(CORPUS)
    assert tokenizer.encode("the zebra") == [tokenizer.token_to_id["the"], tokenizer.unk_id]
    assert tokenizer.unknown_words("the zebra sat") == ["zebra"]


def test_extend_appends_new_words_and_keeps_every_old_id():
    tokenizer = WordTokenizer.from_corpus(CORPUS)
    before = dict(tokenizer.token_to_id)
    added = tokenizer.extend(["risotto", "cat", "saffron", "risotto"])
    assert added == ["risotto", "saffron"]
    assert all(tokenizer.token_to_id[word] == i for word, i in before.items())
    assert tokenizer.token_to_id["risotto"] == len(before)
    assert tokenizer.token_to_id["saffron"] == len(before) + 1


def test_new_words_in_lists_only_absent_words_by_frequency():
    tokenizer = WordTokenizer.from_corpus(CORPUS)
    assert tokenizer.new_words_in("saffron rice and saffron cat") == ["saffron", "and", "rice"]


def test_save_then_load_gives_the_same_vocabulary(tmp_path):
    tokenizer = WordTokenizer.from_corpus(CORPUS)
    tokenizer.save(tmp_path / "tokenizer.json")
    assert WordTokenizer.load(tmp_path / "tokenizer.json").id_to_token == tokenizer.id_to_token


def test_loading_a_corrupted_tokenizer_is_a_user_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="corrupted"):
        WordTokenizer.load(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer.json").write_text(json.dumps({"vocab": ["a", "b"]}), encoding="utf-8")
    with pytest.raises(UserError, match="corrupted"):
        WordTokenizer.load(tmp_path / "tokenizer.json")
