"""Everything fine-tuning and comparison read from data/: the new domain and the
pretraining yardsticks, tokenized with the base vocabulary extended by the new
domain's words (existing ids unchanged), and the flags that name those files."""

import argparse
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.data import CorpusSplits, encode_documents, make_splits, read_corpus, split_documents, split_train_val
from minigpt.evaluation import check_probe_answers, load_probes, probe_accuracy, stream_loss
from minigpt.checkpoint import read_run_info
from minigpt.plumbing.errors import UserError
from minigpt.tokenizer import WordTokenizer

DEFAULT_PRETRAIN_CORPUS = "data/pretrain.txt"  # for a base whose run.json does not record its corpus (written before it did)


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def corpus_record(path: str | Path) -> dict:
    """What a model directory records about the corpus that made it: where it was, and its SHA-256."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def default_probes(corpus: str | Path, probes: str | None, flag: str) -> tuple[str | None, str]:
    """The probe file to use and a note: `probes` if given, else <corpus stem>_probes.json beside the corpus
    if it exists (data/pretrain.txt -> data/pretrain_probes.json), else None: a user's own corpus needs no probes."""
    if probes is not None:
        return probes, ""
    beside = Path(corpus).with_name(f"{Path(corpus).stem}_probes.json")
    if beside.is_file():
        return str(beside), ""
    return None, f"note: no probe file for {corpus} ({beside.name} beside it, or {flag}); knowledge probes are skipped"


def recorded_pretrain_corpus(base_path: str | Path) -> str:
    """The corpus the base was pretrained on, as its run.json records it (checked by SHA-256); a UserError naming
    --pretrain-corpus if it is gone or changed; data/pretrain.txt, with a note, for a base that records none."""
    recorded = (read_run_info(base_path) or {}).get("corpus")
    if isinstance(recorded, dict) and isinstance(recorded.get("path"), str):
        path = Path(recorded["path"])
        if not path.is_file():
            raise UserError(f"{base_path} was pretrained on {path}, which no longer exists; "
                            "pass that corpus with --pretrain-corpus to measure forgetting")
        if file_sha256(path) != recorded.get("sha256"):
            raise UserError(f"{path} has changed since {base_path} was pretrained on it (SHA-256 differs); "
                            "pass the original corpus with --pretrain-corpus")
        return str(path)
    print(f"note: {base_path} does not record its pretraining corpus; forgetting is measured on "
          f"{DEFAULT_PRETRAIN_CORPUS} (pass --pretrain-corpus to choose)")
    return DEFAULT_PRETRAIN_CORPUS


def resolve_data_paths(args, base_path: str | Path) -> None:
    """Fill in the data flags left to their defaults (None), printing a note for each choice the user should know.

    The forgetting yardstick defaults to the corpus the base was pretrained on,
    as recorded (path and SHA-256) in its run.json, not to whatever
    data/pretrain.txt happens to hold.
    """
    recorded = (read_run_info(base_path) or {}).get("corpus")
    if args.pretrain_corpus is None:
        args.pretrain_corpus = recorded_pretrain_corpus(base_path)
    elif isinstance(recorded, dict) and Path(args.pretrain_corpus).is_file() and file_sha256(args.pretrain_corpus) != recorded.get("sha256"):
        print(f"note: {base_path} was pretrained on {recorded.get('path')}, not on {args.pretrain_corpus}; "
              "forgetting is measured on the corpus you passed")
    for probes_flag, corpus_flag in (("probes", "data"), ("pretrain_probes", "pretrain_corpus")):
        chosen, note = default_probes(getattr(args, corpus_flag), getattr(args, probes_flag), "--" + probes_flag.replace("_", "-"))
        setattr(args, probes_flag, chosen)
        if note:
            print(note)


def recorded_finetune_corpus(metrics: dict, results: Path, flag: str = "--data", check: bool = True) -> str:
    """The new-domain corpus a results folder was fine-tuned on: metrics.json's data_corpus (path and SHA-256),
    or for results written before it was recorded, the --data they were run with. A corpus that is gone or
    changed is a UserError naming `flag`, the caller's way to pass it; with check=False (only its name is
    needed, as generate.py names adapters after it) the recorded path is returned as it is."""
    recorded = metrics.get("data_corpus")
    if isinstance(recorded, dict) and isinstance(recorded.get("path"), str):
        path = Path(recorded["path"])
        if not check:
            return str(path)
        if not path.is_file():
            raise UserError(f"{results} was fine-tuned on {path}, which no longer exists; pass that corpus with {flag}")
        if file_sha256(path) != recorded.get("sha256"):
            raise UserError(f"{path} has changed since {results} was fine-tuned on it (SHA-256 differs); "
                            f"pass the original corpus with {flag}")
        return str(path)
    settings = metrics.get("settings")
    data = settings.get("data") if isinstance(settings, dict) else None
    if isinstance(data, str) and (not check or Path(data).is_file()):
        return data
    raise UserError(f"{results}/metrics.json does not record a corpus that exists here; pass the fine-tuning corpus with {flag}")


class EvaluationSuite:
    """The fixed yardsticks every model is measured with, before and after fine-tuning.

    New domain: loss on its validation split and its knowledge probes (learning).
    Pretraining: loss on its validation split and its probes (forgetting).
    """

    def __init__(self, finetune_val: torch.Tensor, finetune_probes: list[dict], pretrain_val: torch.Tensor, pretrain_probes: list[dict]):
        self.finetune_val, self.finetune_probes = finetune_val, finetune_probes
        self.pretrain_val, self.pretrain_probes = pretrain_val, pretrain_probes

    def measure(self, model, tokenizer: WordTokenizer, device) -> dict:
        """Losses and probe accuracies; an accuracy is None where there are no probes (a user's own corpus)."""
        finetune_loss = stream_loss(model, self.finetune_val, device)
        pretrain_loss = stream_loss(model, self.pretrain_val, device)
        finetune_accuracy, finetune_results = probe_accuracy(model, tokenizer, self.finetune_probes, device) if self.finetune_probes else (None, [])
        pretrain_accuracy, pretrain_results = probe_accuracy(model, tokenizer, self.pretrain_probes, device) if self.pretrain_probes else (None, [])
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
    pretrain_val_documents: list[str] = ()  # its text, for prompts on a user's own corpus


def prepare_finetune_data(base_tokenizer: WordTokenizer, data: str, probes: str | None, pretrain_corpus: str,
                          pretrain_probes: str | None, block_size: int) -> FinetuneData:
    """Probe files may be None (no probes: their accuracies are None)."""
    text = read_corpus(data)
    finetune_probes = load_probes(probes) if probes else []
    pretrain_text = read_corpus(pretrain_corpus)
    old_probes = load_probes(pretrain_probes) if pretrain_probes else []
    check_probe_answers(old_probes, base_tokenizer, pretrain_probes)
    tokenizer = base_tokenizer.copy()
    new_words = tokenizer.new_words_in(text)
    tokenizer.extend(new_words)
    check_probe_answers(finetune_probes, tokenizer, probes)
    splits = make_splits(text, tokenizer, block_size, source=data, fix="use a longer corpus")
    _, pretrain_val_docs = split_train_val(split_documents(pretrain_text))
    pretrain_val = encode_documents(pretrain_val_docs, tokenizer)
    if len(pretrain_val) <= block_size:
        raise UserError(
            f"{pretrain_corpus}'s validation split has {len(pretrain_val)} tokens, fewer than one context window "
            f"({block_size + 1}); pass the corpus the model was pretrained on with --pretrain-corpus"
        )
    suite = EvaluationSuite(splits.val, finetune_probes, pretrain_val, old_probes)
    return FinetuneData(tokenizer, new_words, splits, pretrain_val, suite, pretrain_val_docs)


def add_finetune_data_flags(parser: argparse.ArgumentParser, data_default: str | None = "data/cooking.txt") -> None:
    """The new domain (learning) and the pretraining yardsticks (forgetting), shared by fine-tuning and comparison.

    `data_default` None: the new-domain corpus the results record (compare.py), see `recorded_finetune_corpus`."""
    data_help = "new-domain corpus (UTF-8, documents separated by blank lines)"
    if data_default is None:
        data_help += " (default: the corpus the results were fine-tuned on, recorded in their metrics.json)"
    parser.add_argument("--data", default=data_default, help=data_help)
    parser.add_argument("--probes", default=None, help="new-domain knowledge probes (default: <data>_probes.json beside --data, "
                        "data/cooking_probes.json for the default; none for a corpus without one)")
    parser.add_argument("--pretrain-corpus", default=None, help="pretraining corpus: its validation split measures forgetting "
                        "(default: the corpus the base was pretrained on, recorded in its run.json)")
    parser.add_argument("--pretrain-probes", default=None, help="pretraining probes: measure forgetting "
                        "(default: <corpus>_probes.json beside the pretraining corpus, if there is one)")
