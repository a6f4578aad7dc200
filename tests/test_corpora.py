"""data/make_corpora.py: every shipped corpus is what the script makes; adding sport left the old ones unchanged."""

import hashlib
import importlib.util
import random

import pytest

from conftest import DATA

# The hashes the pretraining and cooking files had before the sport domain was added.
PINNED = {
    "pretrain.txt": "27aad5705bcd4de886846c47fbd12ac17981e604cf372b9560484419783d5509",
    "cooking.txt": "e432f6f49dc3a1ea05e399de9bc091eeabc245ace0d4deb1131fa16d38c26784",
    "pretrain_probes.json": "4b3dcc99ecdd8e6463fb40f53760e3a8b5108d6adf0c5a3b11250bba229bc5a8",
    "cooking_probes.json": "25b6768957fe49f0cecfa3e0291a2aa28041db100ad613fa75eb0fc171e40618",
}


def load_script():
    spec = importlib.util.spec_from_file_location("make_corpora", DATA / "make_corpora.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_old_corpora_keep_their_pinned_hashes():
    for name, digest in PINNED.items():
        assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest, name


def test_the_script_makes_exactly_the_shipped_corpora():
    script = load_script()
    rng = random.Random(script.SEED)
    made = {"pretrain.txt": script.make_pretrain(rng), "cooking.txt": script.make_cooking(rng),
            "sport.txt": script.make_sport(random.Random(script.SPORT_SEED))}
    for name, docs in made.items():
        assert (DATA / name).read_text(encoding="ascii") == "\n\n".join(docs) + "\n", name


def test_sport_has_its_own_new_words_and_a_few_shared_with_cooking():
    script = load_script()
    pretrain = set(script.words((DATA / "pretrain.txt").read_text()))
    cooking_new = set(script.words((DATA / "cooking.txt").read_text())) - pretrain
    sport_new = set(script.words((DATA / "sport.txt").read_text())) - pretrain
    assert len(sport_new - cooking_new) >= 20
    assert sport_new & cooking_new == {"ramen", "noodles", "batter"}


def test_the_corpora_are_written_all_or_none(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "HERE", tmp_path)
    (tmp_path / "pretrain.txt").write_text("old corpus")
    with pytest.raises(UnicodeEncodeError):  # the second file cannot be written (not ASCII): the first must not replace its old copy
        script.write_all_atomically({"pretrain.txt": "new corpus", "pretrain_probes.json": "caf\u00e9"})
    assert [p.name for p in tmp_path.iterdir()] == ["pretrain.txt"] and (tmp_path / "pretrain.txt").read_text() == "old corpus"
    script.write_all_atomically({"pretrain.txt": "new corpus", "pretrain_probes.json": "[]"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pretrain.txt", "pretrain_probes.json"]
