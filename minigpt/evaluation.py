"""Measuring what a model learned: exact loss, perplexity, probes and samples.

* `stream_loss` is the mean next-token cross-entropy over a whole token stream,
  cut into non-overlapping windows: exact and deterministic, no sampling.
* `unigram_perplexity` is the baseline a model must beat: predict every token
  from its training-set frequency alone, ignoring context.
* A knowledge probe is a prompt and the one word that must come next
  ("the capital of france is" -> "paris"). Probe accuracy is the share of
  probes whose greedy next token is that word, so "did it learn?" is a number.
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import parse_json, read_text_file
from minigpt.tokenizer import WordTokenizer, split_words


@torch.no_grad()
def stream_loss(model, data: torch.Tensor, device, batch_size: int = 64) -> float:
    """Mean cross-entropy (nats/token) over all non-overlapping windows of `data`."""
    model.eval()
    block_size = model.text_positions()  # block_size, less positions prefix or prompt tuning reserve
    n_windows = (len(data) - 1) // block_size
    inputs = data[: n_windows * block_size].view(n_windows, block_size)  # (N, T)
    targets = data[1 : n_windows * block_size + 1].view(n_windows, block_size)  # (N, T)
    total, count = 0.0, 0
    for start in range(0, n_windows, batch_size):
        x, y = inputs[start : start + batch_size].to(device), targets[start : start + batch_size].to(device)
        logits, _ = model(x)
        # (N*T, vocab_size) logits against (N*T,) targets, summed so windows of any count average exactly
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    return total / count


def unigram_perplexity(train: torch.Tensor, val: torch.Tensor, vocab_size: int) -> float:
    """Perplexity on val of a model that predicts each token by its (add-one smoothed) train frequency."""
    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    log_probs = torch.log(counts / counts.sum())
    return math.exp(-log_probs[val].mean().item())


def load_probes(path: str | Path) -> list[dict]:
    """A JSON list of {"prompt": ..., "answer": ...}; a UserError if missing or malformed."""
    text = read_text_file(path, "probe file", "pass an existing probe file (see --help)")
    try:
        probes = parse_json(text)
        if not isinstance(probes, list) or not probes:
            raise ValueError("expected a non-empty JSON list")
        for probe in probes:
            if not (isinstance(probe.get("prompt"), str) and isinstance(probe.get("answer"), str)):
                raise ValueError("every probe needs a string prompt and answer")
    except (ValueError, AttributeError, UnicodeDecodeError) as error:
        raise UserError(f"probe file {path} is malformed ({error}); each entry is {{\"prompt\": ..., \"answer\": ...}}") from None
    return probes


def check_probe_answers(probes: list[dict], tokenizer: WordTokenizer, source: str, corpus: str = "") -> None:
    """Every answer must be one word the vocabulary has, or the probe could never be answered right."""
    vocabulary = f"the vocabulary of {corpus}" if corpus else "the vocabulary"
    for probe in probes:
        answer = probe["answer"]
        if split_words(answer) != [answer] or answer not in tokenizer.token_to_id:
            raise UserError(
                f"probe answer {answer!r} in {source} is not a single lower-case word of {vocabulary}; "
                "each answer must be one word the corpus uses (probes are optional: leave out --probes for a corpus without them)"
            )


@torch.no_grad()
def probe_accuracy(model, tokenizer: WordTokenizer, probes: list[dict], device) -> tuple[float, list[dict]]:
    """Share of probes whose greedy next word is the answer, and each probe's prediction.

    Prompts of the same length run as one batch, several times faster than one forward pass per probe.
    No padding is needed, and every row is computed on its own (causal attention within the row, layer norm
    per position), so each prediction is the one its prompt alone gives (tests/test_evaluation_probes.py
    checks this against one pass per probe).
    """
    model.eval()
    # <eot> first: the prompt is read as the start of a fresh document.
    encoded = [([tokenizer.eot_id] + tokenizer.encode(probe["prompt"]))[-model.text_positions() :] for probe in probes]
    same_length: dict[int, list[int]] = {}
    for index, ids in enumerate(encoded):
        same_length.setdefault(len(ids), []).append(index)
    predicted = [""] * len(probes)
    for indices in same_length.values():
        logits, _ = model(torch.tensor([encoded[i] for i in indices], device=device))
        for i, token in zip(indices, logits[:, -1].argmax(dim=-1).tolist()):
            predicted[i] = tokenizer.id_to_token[token]
    results = [{**probe, "predicted": word, "correct": word == probe["answer"]} for probe, word in zip(probes, predicted)]
    accuracy = sum(r["correct"] for r in results) / len(results)
    return accuracy, results


def prompts_for(tokenizer: WordTokenizer, defaults: list[str], documents: list[str], count: int = 2, words: int = 5) -> list[str]:
    """`defaults` if the tokenizer knows all their words, else the opening words of the first `count` documents
    (a user's own validation text): the toy prompts would read as <unk> on another corpus."""
    if not any(tokenizer.unknown_words(prompt) for prompt in defaults):
        return list(defaults)
    openings = [" ".join(split_words(document)[:words]) for document in documents if split_words(document)]
    return openings[:count] or list(defaults)


def note_unknown_prompt_words(tokenizer: WordTokenizer, prompts: list[str]) -> str:
    """A note naming the prompt words that will be read as <unk>, or "" if there are none."""
    unknown = [word for prompt in prompts for word in tokenizer.unknown_words(prompt)]
    if not unknown:
        return ""
    return f"note: {len(unknown)} prompt word(s) are not in the vocabulary and map to <unk>: {', '.join(unknown)}"


@torch.no_grad()
def complete(model, tokenizer: WordTokenizer, prompt: str, max_new_tokens: int, device) -> str:
    """Greedy continuation of `prompt` (reproducible), decoded up to the first <eot>."""
    ids = [tokenizer.eot_id] + tokenizer.encode(prompt)
    out = model.generate(torch.tensor([ids], device=device), max_new_tokens, temperature=0.0)[0, len(ids) :].tolist()
    if tokenizer.eot_id in out:
        out = out[: out.index(tokenizer.eot_id)]
    return tokenizer.decode(tokenizer.encode(prompt) + out)
