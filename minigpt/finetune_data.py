"""Everything fine-tuning and comparison read from data/: the new domain and the
pretraining yardsticks, tokenized with the base vocabulary extended by the new
domain's words (existing ids unchanged)."""

from dataclasses import dataclass

import torch

from minigpt.data import CorpusSplits, encode_documents, make_splits, read_corpus, split_documents, split_train_val
from minigpt.errors import UserError
from minigpt.evaluation import EvaluationSuite, check_probe_answers, load_probes
from minigpt.tokenizer import WordTokenizer


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
