"""Knowledge probes run in batches of equal-length prompts and predict exactly what one pass per probe predicts."""

import json

import torch

from conftest import DATA, tiny_model
from lora import LoRAConfig, apply_lora
from minigpt.data import read_corpus
from minigpt.evaluation import probe_accuracy
from minigpt.tokenizer import WordTokenizer


def one_pass_per_probe(model, tokenizer, probes):
    predictions = []
    with torch.no_grad():
        for probe in probes:
            ids = ([tokenizer.eot_id] + tokenizer.encode(probe["prompt"]))[-model.text_positions():]
            logits, _ = model(torch.tensor([ids]))
            predictions.append(tokenizer.id_to_token[logits[0, -1].argmax().item()])
    return predictions


def test_batched_probes_give_the_logits_and_predictions_of_one_pass_per_probe():
    tokenizer = WordTokenizer.from_corpus(read_corpus(DATA / "pretrain.txt") + "\n\n" + read_corpus(DATA / "cooking.txt"))
    probes = json.loads((DATA / "pretrain_probes.json").read_text()) + json.loads((DATA / "cooking_probes.json").read_text())
    assert len({len(tokenizer.encode(p["prompt"])) for p in probes}) > 3  # several batches, several rows in most
    model = tiny_model(vocab_size=tokenizer.vocab_size, seed=4, block_size=16)
    with torch.no_grad():  # spread the weights so that predictions differ between probes
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    for with_lora in (False, True):
        if with_lora:  # the adapted model too: B set non-zero, so the low-rank path changes the predictions
            for layer in apply_lora(model, LoRAConfig(r=2, lora_alpha=4)).values():
                torch.nn.init.normal_(layer.lora_B.weight, std=0.5)
        expected = one_pass_per_probe(model, tokenizer, probes)
        accuracy, results = probe_accuracy(model, tokenizer, probes, "cpu")
        assert [r["predicted"] for r in results] == expected
        assert len(set(expected)) > 5, "the check needs varied predictions to mean anything"
        assert accuracy == sum(word == p["answer"] for word, p in zip(expected, probes)) / len(probes)
