"""Everything fine-tuning and comparison read from data/: the new domain and the
pretraining yardsticks, tokenized with the base vocabulary extended by the new
domain's words (existing ids unchanged), and the flags that name those files."""

import argparse
import math
from dataclasses import dataclass

import torch

from minigpt.data import CorpusSplits, encode_documents, make_splits, read_corpus, split_documents, split_train_val
from minigpt.evaluation import check_probe_answers, load_probes, probe_accuracy, stream_loss
from minigpt.io import UserError
from minigpt.tokenizer import WordTokenizer


class EvaluationSuite:
    """The fixed yardsticks every model is measured with, before and after fine-tuning.

    New domain: loss on its validation split and its knowledge probes (learning).
    Pretraining: loss on its validation split and its probes (forgetting).
    """

    def __init__(self, finetune_val: torch.Tensor, finetune_probes: list[dict], pretrain_val: torch.Tensor, pretrain_probes: list[dict]):
        self.finetune_val, self.finetune_probes = finetune_val, finetune_probes
        self.pretrain_val, self.pretrain_probes = pretrain_val, pretrain_probes

    def measure(self, model, tokenizer: WordTokenizer, device) -> dict:
        finetune_loss = stream_loss(model, self.finetune_val, device)
        pretrain_loss = stream_loss(model, self.pretrain_val, device)
        finetune_accuracy, finetune_results = probe_accuracy(model, tokenizer, self.finetune_probes, device)
        pretrain_accuracy, pretrain_results = probe_accuracy(model, tokenizer, self.pretrain_probes, device)
        return {
            "finetune_val_loss": finetune_loss,
            "finetune_val_perplexity": math.exp(finetune_loss),
            "finetune_probe_accuracy": finetune_accuracy,
            "pretrain_val_loss": pretrain_loss,
            "pretrain_val_perplexity": math.exp(pretrain_loss),
            "pretrain_probe_accuracy": pretrain_accuracy,
            "finetune_probe_results": finetune_results,
            "pretrain_probe_results": pretrain_results,
        }


@dataclass
class FinetuneData:
    tokenizer: WordTokenizer  # base vocabulary + new words
    new_words: list[str]
    splits: CorpusSplits  # the new domain, train and validation
    pretrain_val: torch.Tensor  # pretraining validation split, for forgetting
    suite: EvaluationSuite


def prepare_finetune_data(base_tokenizer: WordTokenizer, data: str, probes: str, pretrain_corpus: str,
                          pretrain_probes: str, block_size: int) -> FinetuneData:
    text = read_corpus(data)
    finetune_probes = load_probes(probes)
    pretrain_text = read_corpus(pretrain_corpus)
    old_probes = load_probes(pretrain_probes)
    check_probe_answers(old_probes, base_tokenizer, pretrain_probes)
    tokenizer = base_tokenizer.copy()
    new_words = tokenizer.new_words_in(text)
    tokenizer.extend(new_words)
    check_probe_answers(finetune_probes, tokenizer, probes)
    splits = make_splits(text, tokenizer, block_size, source=data)
    _, pretrain_val_docs = split_train_val(split_documents(pretrain_text))
    pretrain_val = encode_documents(pretrain_val_docs, tokenizer)
    if len(pretrain_val) <= block_size:
        raise UserError(
            f"{pretrain_corpus}'s validation split has {len(pretrain_val)} tokens, fewer than one context window "
            f"({block_size + 1}); pass the corpus the model was pretrained on with --pretrain-corpus"
        )
    suite = EvaluationSuite(splits.val, finetune_probes, pretrain_val, old_probes)
    return FinetuneData(tokenizer, new_words, splits, pretrain_val, suite)


def add_finetune_data_flags(parser: argparse.ArgumentParser) -> None:
    """The new domain (learning) and the pretraining yardsticks (forgetting), shared by fine-tuning and comparison."""
    parser.add_argument("--data", default="data/cooking.txt", help="new-domain corpus (UTF-8, documents separated by blank lines)")
    parser.add_argument("--probes", default="data/cooking_probes.json", help="new-domain knowledge probes")
    parser.add_argument("--pretrain-corpus", default="data/pretrain.txt", help="pretraining corpus: its validation split measures forgetting")
    parser.add_argument("--pretrain-probes", default="data/pretrain_probes.json", help="pretraining probes: measure forgetting")
