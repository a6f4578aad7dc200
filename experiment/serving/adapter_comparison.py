"""What compare_adapters.py runs: every adapter (and a mix) on every domain, and what switching costs.

* The table: the base, each adapter, the equal mix, and each adapter alone at
  its weight in the mix (the control: what the mix would be if the other
  adapter added nothing), each evaluated on each
  domain's validation split and probes and on the pretraining corpus. Text is
  tokenized with the union vocabulary; a word the model being measured lacks
  reads as <unk>, in inputs and in targets (what that model on its own would
  see), so the base's loss on a new domain counts predicting <unk> as right.
* Timings, interleaved (A, B, C, A, B, C, ...) so that load on a shared machine
  hits every variant alike, reported as median and interquartile range:
  switching adapters in memory, loading an adapter directory onto the served
  base, and loading a merged model directory from disk; and generation speed
  with and without the key/value cache.
"""

import json
import statistics
import time
from pathlib import Path

import torch

from experiment.serving.server import AdapterServer
from minigpt.checkpoint import load_model_dir
from minigpt.data import encode_documents, read_corpus, split_documents, split_train_val
from minigpt.evaluation import load_probes, probe_accuracy, stream_loss
from experiment.training.data import recorded_finetune_corpus
from minigpt.plumbing.atomic_writes import atomic_write_text
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import read_json_file


def recorded_adapters(results, minimum: int = 2, flag: str = "--domain NAME=CORPUS", check: bool = True) -> dict[str, tuple[Path, str]]:
    """{name: (adapter directory, the corpus it was fine-tuned on)} for lora_adapter/ and every adapters/NAME/ of a
    results folder, from what its metrics files record; named after the corpus (cooking.txt -> cooking) or NAME.
    Fewer than `minimum` (compare_adapters.py compares two) is a UserError that says how to train another.
    `flag` and `check` go to recorded_finetune_corpus: how the caller passes a corpus that is gone or changed,
    and whether that matters (not to generate.py, which only names the adapter after it)."""
    results = Path(results)
    found = {}
    candidates = [(results / "lora_adapter", results / "metrics.json", None)]
    if (results / "adapters").is_dir():
        candidates += [(d, d / "metrics.json", d.name) for d in sorted((results / "adapters").iterdir())
                       if d.is_dir() and not d.name.startswith(".")]
    for path, metrics_file, name in candidates:
        if not path.is_dir() or not metrics_file.is_file():
            continue
        try:
            corpus = recorded_finetune_corpus(read_json_file(metrics_file, "metrics file"), results, flag, check)
        except ValueError as error:
            raise UserError(f"{metrics_file} is corrupted ({error}); run python train_finetune.py again") from None
        name = name or Path(corpus).stem
        found[name if name not in found and name.isidentifier() else f"adapter{len(found) + 1}"] = (path, corpus)
    if len(found) < minimum:
        raise UserError(f"{results} records {len(found)} adapter(s); compare_adapters.py needs two: train a second one with "
                        "python train_finetune.py --method lora --data YOUR_TEXT --adapter-name NAME, or pass --adapter and --domain")
    return found


def spread(values: list[float]) -> dict:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": quartiles[0], "q3": quartiles[2], "n": len(values)}


def validation_ids(server: AdapterServer, corpus: str) -> torch.Tensor:
    _, val_docs = split_train_val(split_documents(read_corpus(corpus)))
    return encode_documents(val_docs, server.tokenizer)


def measure_table(server: AdapterServer, domains: dict[str, tuple[str, str]], models: dict[str, dict], device) -> dict:
    """{model label: {domain: {"val_loss", "probe_accuracy"}}}; models maps a label to adapter weights ({} = base)."""
    data = {name: (validation_ids(server, corpus), load_probes(probes) if probes else []) for name, (corpus, probes) in domains.items()}
    table = {}
    for label, weights in models.items():
        server.mix(weights)
        row = {}
        for domain, (ids, probes) in data.items():
            accuracy = probe_accuracy(server.model, server.tokenizer, probes, device)[0] if probes else None  # a corpus without probes
            row[domain] = {"val_loss": stream_loss(server.model, server.known_ids(ids), device), "probe_accuracy": accuracy}
        table[label] = row
    server.use(None)
    return table


def time_switching(server: AdapterServer, spare: AdapterServer, adapter_paths: dict[str, Path], merged_path: Path,
                   repeats: int, device) -> dict:
    """Seconds to switch adapters in memory, to load one adapter directory onto `spare`, and to load a merged model."""
    names = list(adapter_paths)
    swap, load_adapter_dir, load_merged = [], [], []
    for i in range(repeats):
        start = time.perf_counter()
        server.use(names[i % len(names)])
        swap.append(time.perf_counter() - start)

        start = time.perf_counter()
        spare.load("timed", adapter_paths[names[0]])
        load_adapter_dir.append(time.perf_counter() - start)
        spare.delete("timed")

        start = time.perf_counter()
        load_model_dir(merged_path, device)
        load_merged.append(time.perf_counter() - start)
    return {"swap_in_memory": spread(swap), "load_adapter_directory": spread(load_adapter_dir), "load_merged_model": spread(load_merged)}


@torch.no_grad()
def time_generation(model, prompt_ids: list[int], tokens: int, repeats: int, device) -> dict:
    """Tokens per second with and without the key/value cache, interleaved, greedy."""
    idx = torch.tensor([prompt_ids], device=device)
    rates = {"cached": [], "uncached": []}
    model.generate(idx, 2, temperature=0.0, use_cache=True)  # warm-up
    for _ in range(repeats):
        for label, use_cache in (("uncached", False), ("cached", True)):
            start = time.perf_counter()
            model.generate(idx, tokens, temperature=0.0, use_cache=use_cache)
            rates[label].append(tokens / (time.perf_counter() - start))
    return {label: spread(values) for label, values in rates.items()}


def run_adapter_comparison(args, device) -> dict:
    adapters = dict(args.adapter_paths)
    server = AdapterServer.from_base_dir(args.pretrained, device)
    for name, path in adapters.items():
        server.load(name, path)
    if len(adapters) < 2:
        raise UserError("compare_adapters.py needs at least two adapters; pass --adapter NAME=DIR twice")
    domains = {"pretraining": (args.pretrain_corpus, args.pretrain_probes), **dict(args.domains)}
    mix = {name: 1.0 / len(adapters) for name in adapters}
    models = {"base": {}, **{name: {name: 1.0} for name in adapters},
              "mix " + ",".join(f"{n}={w:g}" for n, w in mix.items()): mix,
              **{f"{name}={mix[name]:g} alone": {name: mix[name]} for name in adapters}}  # the mix's controls
    table = measure_table(server, domains, models, device)
    spare = AdapterServer.from_base_dir(args.pretrained, device)  # only for timing loads
    switching = time_switching(server, spare, adapters, Path(args.merged), args.repeats, device)
    base, tokenizer = load_model_dir(args.pretrained, device)
    prompt = [tokenizer.eot_id] + tokenizer.encode("the capital of france is")
    block = base.config.block_size
    generation = {
        f"{block - len(prompt)} tokens (within the context)": time_generation(base, prompt, block - len(prompt), args.repeats, device),
        f"{2 * block} tokens (past the context)": time_generation(base, prompt, 2 * block, max(3, args.repeats // 3), device),
    }
    result = {"adapters": {n: str(p) for n, p in adapters.items()}, "shared_words": server.shared_words,
              "corpora": {name: str(corpus) for name, (corpus, _) in domains.items()},
              "table": table, "switching_seconds": switching, "generation_tokens_per_second": generation,
              "repeats": args.repeats, "device": str(device), "torch_threads": torch.get_num_threads()}
    out = Path(args.out)
    atomic_write_text(out / "adapters_comparison.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "adapters_comparison.md", markdown(result))
    return result


def markdown(result: dict) -> str:
    domains = list(next(iter(result["table"].values())))
    lines = ["| model | " + " | ".join(f"{d} val loss | {d} probes" for d in domains) + " |",
             "|---|" + "---|---|" * len(domains)]
    for label, row in result["table"].items():
        lines.append(f"| {label} | " + " | ".join(f"{row[d]['val_loss']:.3f} | " + (f"{row[d]['probe_accuracy']:.0%}" if row[d]['probe_accuracy']
                                                                                    is not None else "-") for d in domains) + " |")
    lines += ["", "| operation | median | interquartile range |", "|---|---|---|"]
    for label, s in result["switching_seconds"].items():
        lines.append(f"| {label.replace('_', ' ')} | {s['median'] * 1e3:.3f} ms | {s['q1'] * 1e3:.3f} to {s['q3'] * 1e3:.3f} ms |")
    lines += ["", "| generation | cache | median tokens/s | interquartile range |", "|---|---|---|---|"]
    for label, rates in result["generation_tokens_per_second"].items():
        for cache, s in rates.items():
            lines.append(f"| {label} | {cache} | {s['median']:,.0f} | {s['q1']:,.0f} to {s['q3']:,.0f} |")
    return "\n".join(lines) + "\n"
