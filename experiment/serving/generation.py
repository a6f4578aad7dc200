"""What generate.py runs: one base with named adapters (and merged models), prompts in, continuations out.

`ModelChoice` holds an AdapterServer (the base and every --adapter) and any
--merged model directories, and knows which one is selected: "base", an
adapter name, a mix ("cooking=0.5,sport=0.5") or a merged model's name.
Switching between the base, adapters and mixes moves no weights
(experiment/serving/server.py); a merged model is a separate plain MiniGPT.
A DoRA or QLoRA adapter is not an additive update on the float base, so the
server cannot hold it; it is loaded on its own with load_adapter (DoRA's
magnitudes, QLoRA's 4-bit base), served exactly as trained, and cannot be mixed.
`interactive` reads prompts and short commands (:use, :none, :mix, :list, :quit).
"""

import math
import re
import sys
import time
from pathlib import Path

import torch

from experiment.serving.adapter_comparison import recorded_adapters
from experiment.serving.server import AdapterServer
from experiment.training.adapter import load_adapter, read_adapter_config
from lora import LoRAConfig, LoRAError
from lora.multi_adapter import check_mixable
from minigpt.checkpoint import load_model_dir, read_run_info
from minigpt.data import read_corpus, split_documents, split_train_val
from minigpt.evaluation import prompts_for
from minigpt.device import choose_device
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.flags import apply_threads
from minigpt.tokenizer import split_words

COMMANDS = ":use NAME | :none | :mix NAME=WEIGHT,NAME=WEIGHT | :list | :help | :quit"


def parse_named_path(text: str, flag: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.isidentifier() or not path:
        raise UserError(f"{flag} {text!r} must look like NAME=DIRECTORY, e.g. {flag} cooking=dist/finetuning_results/lora_adapter")
    return name, Path(path)


def parse_mix(text: str) -> dict[str, float]:
    """"cooking=0.5,sport=0.5" (or "cooking=0.5 sport=0.5") -> {"cooking": 0.5, "sport": 0.5}; a UserError naming the first bad part."""
    weights = {}
    for part in re.split(r"[,\s]+", re.sub(r"\s*=\s*", "=", text.strip())):
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or not name or weight is None or not math.isfinite(weight):
            raise UserError(f"mix part {part!r} needs a number after '=' (NAME=WEIGHT), e.g. cooking=0.5,sport=0.5")
        if not 0 <= weight <= 1:  # 1 is the adapter exactly; above 1 extrapolates past what it learned and degenerates
            raise UserError(f"mix weight {part!r} must be from 0 to 1 (1 is the adapter exactly), e.g. cooking=0.5,sport=0.5")
        if name in weights:
            raise UserError(f"adapter {name!r} appears twice in the mix {text!r}; give each adapter one weight")
        weights[name] = weight
    if not weights:
        raise UserError("an empty mix; write NAME=WEIGHT pairs separated by commas, e.g. cooking=0.5,sport=0.5")
    return weights


class ModelChoice:
    def __init__(self, pretrained, adapters: list[tuple[str, Path]], merged: list[tuple[str, Path]], device):
        self.pretrained = pretrained
        self.server = AdapterServer.from_base_dir(pretrained, device)
        self.merged = {}  # name -> (model, tokenizer): merged models and adapters served on their own
        self.alone: set[str] = set()  # the DoRA and QLoRA adapters among them (they cannot be mixed)
        self.device = device
        for name, path in adapters:
            self.add_adapter(name, path)
        for name, path in merged:
            self.check_new_name(name)
            self.merged[name] = load_model_dir(path, device, hint="pass a model directory, e.g. dist/finetuning_results/lora_merged")
        self.selected = "base"

    def check_new_name(self, name: str) -> None:
        if name in self.server.configs or name in self.merged or name == "base":
            raise UserError(f"the name {name!r} is used twice; give every adapter and merged model its own name")

    def add_adapter(self, name: str, path: Path) -> None:
        self.check_new_name(name)
        if self.mixable(path):
            self.server.load(name, path)
        else:  # DoRA or QLoRA: exactly the model it was trained as, on its own
            model, tokenizer, _ = load_adapter(path, self.pretrained, self.device)
            self.merged[name] = (model, tokenizer)
            self.alone.add(name)

    @staticmethod
    def mixable(path: Path) -> bool:
        """False for a DoRA or QLoRA adapter, which the shared float base cannot serve (check_mixable says why)."""
        try:
            check_mixable(LoRAConfig.from_dict(read_adapter_config(path)))
        except LoRAError:
            return False
        return True

    @property
    def names(self) -> list[str]:
        return ["base", *self.server.names, *self.merged]

    def select(self, choice: str) -> None:
        """"base", an adapter or merged model name, or a mix written NAME=WEIGHT,..."""
        if "=" in choice:
            weights = parse_mix(choice)
            for name in weights:
                if name in self.merged:
                    kind = "a DoRA or QLoRA adapter, served on its own" if name in self.alone else "a merged model"
                    raise UserError(f"{name!r} is {kind}; only plain LoRA, rsLoRA and LoRA+ adapters can be mixed")
            self.server.mix(weights)
        elif choice == "base":
            self.server.use(None)
        elif choice in self.merged:
            pass
        else:
            if choice not in self.server.configs:
                raise UserError(f"unknown model {choice!r}; choose one of {', '.join(self.names)} or a mix NAME=WEIGHT,...")
            self.server.use(choice)
        self.selected = choice

    def current(self):
        if self.selected in self.merged:
            return self.merged[self.selected]
        return self.server.model, self.server.tokenizer

    def unknown_words(self, prompt: str) -> list[str]:
        if self.selected in self.merged:
            return self.merged[self.selected][1].unknown_words(prompt)
        return self.server.unknown_words(prompt)

    def check_prompt(self, prompt: str) -> None:
        """A prompt none of whose words any loaded model knows is a mistake, not something to continue."""
        words = [w for w in split_words(prompt) if w.isalnum()]
        known = set(self.server.tokenizer.token_to_id) | {w for _, t in self.merged.values() for w in t.token_to_id}
        if not words or not any(w in known for w in words):
            raise UserError(f"no word of the prompt {prompt!r} is in any loaded model's vocabulary; "
                            "use words from the training text, e.g. \"the capital of france is\"")

    @torch.no_grad()
    def generate(self, prompt: str, max_new_tokens: int, temperature: float, top_k, seed: int, use_cache: bool) -> tuple[str, int, float]:
        """(prompt + continuation up to <eot>, tokens generated, seconds) for the selected model."""
        model, tokenizer = self.current()
        ids = [tokenizer.eot_id] + tokenizer.encode(prompt)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        start = time.perf_counter()
        out = model.generate(torch.tensor([ids], device=self.device), max_new_tokens, temperature=temperature, top_k=top_k,
                             generator=generator, use_cache=use_cache)[0, len(ids):].tolist()
        seconds = time.perf_counter() - start
        if tokenizer.eot_id in out:
            out = out[: out.index(tokenizer.eot_id)]
        return tokenizer.decode(tokenizer.encode(prompt) + out), len(out), seconds


def side_by_side(choice: ModelChoice, prompts: list[str], mixes: list[str], args) -> None:
    """Every model (base, each adapter, each mix, each merged model) on every prompt."""
    rows = choice.names + mixes
    width = max(len(r) for r in rows)
    total_tokens, total_seconds = 0, 0.0
    for prompt in prompts:
        choice.check_prompt(prompt)
        print(f"\nprompt: {prompt}")
        for row in rows:
            choice.select(row)
            text, n, seconds = choice.generate(prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed, not args.no_cache)
            unknown = choice.unknown_words(prompt)
            note = f"   [unknown to this model: {', '.join(unknown)}]" if unknown else ""
            print(f"  {row:<{width}}  {text}{note}")
            total_tokens, total_seconds = total_tokens + n, total_seconds + seconds
    decoding = "greedy" if args.temperature == 0 else f"sampled, temperature {args.temperature:g}, top-k {args.top_k}, seed {args.seed}"
    print(f"\n{decoding}; {total_tokens} tokens in {total_seconds:.2f} s "
          f"({total_tokens / max(total_seconds, 1e-9):,.0f} tokens/s, key/value cache {'off' if args.no_cache else 'on'})")


def interactive(choice: ModelChoice, args) -> None:
    """Prompts and :commands from the keyboard until :quit or end of input; a mistake prints one line and carries on."""
    print(f"models: {', '.join(choice.names)}. Type a prompt, or {COMMANDS}")
    if len(choice.names) > 1:
        choice.select(choice.names[1])
    while True:
        try:
            line = input(f"[{choice.selected}]> ").strip()
        except EOFError:
            break
        try:
            if not line:
                continue
            if line in (":quit", ":q", ":exit"):
                break
            if line == ":help":
                print(COMMANDS)
            elif line == ":list":
                print(f"models: {', '.join(choice.names)}; selected: {choice.selected}")
            elif line == ":none":
                choice.select("base")
            elif line.startswith(":use "):
                choice.select(line[5:].strip())
            elif line.startswith(":mix "):
                choice.select(line[5:].strip())
            elif line.startswith(":"):
                raise UserError(f"unknown command {line.split()[0]!r}; the commands are {COMMANDS}")
            else:
                choice.check_prompt(line)
                text, _, _ = choice.generate(line, args.max_new_tokens, args.temperature, args.top_k, args.seed, not args.no_cache)
                print(text)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)


def own_text_prompts(choice: ModelChoice, pretrained, defaults: list[str]) -> list[str]:
    """`defaults` if the loaded models know their words, else openings of the base's own validation documents
    (the corpus its run.json records): a user's own corpus gets prompts in its own words, not <unk>."""
    recorded = (read_run_info(pretrained) or {}).get("corpus")
    documents = []
    if isinstance(recorded, dict) and isinstance(recorded.get("path"), str) and Path(recorded["path"]).is_file():
        documents = split_train_val(split_documents(read_corpus(recorded["path"])))[1]
    return prompts_for(choice.server.tokenizer, defaults, documents, count=3)


def add_recorded_adapters(choice: ModelChoice, results) -> None:
    """With no --adapter or --merged: every adapter the results folder records (lora_adapter/ and adapters/NAME/)
    that was trained on this base, so `python generate.py` alone shows what fine-tuning did. Says what it loaded."""
    results = Path(results)
    found = recorded_adapters(results, minimum=0, flag="--adapter NAME=DIR", check=False) if results.is_dir() else {}
    fits = {name: path for name, (path, _) in found.items()
            if read_adapter_config(path).get("base_model_fingerprint") == choice.server.base_fingerprint}
    for name, path in fits.items():
        choice.add_adapter(name, path)
    if fits:
        listed = ", ".join(f"{name} ({path})" for name, path in fits.items())
        print(f"adapters recorded in {results}: {listed}; choose others with --adapter NAME=DIR")
    elif found:
        print(f"the adapters in {results} were trained on another base than {choice.pretrained}: showing the base alone "
              "(pass --results or --adapter NAME=DIR)")
    else:
        print(f"no fine-tuned adapters in {results}: showing the base alone (run python train_finetune.py, "
              "or pass --adapter NAME=DIR)")


def run_generation(args, default_prompts: list[str] = ()) -> None:
    apply_threads(args.threads)
    adapters = [parse_named_path(text, "--adapter") for text in args.adapter]
    merged = [parse_named_path(text, "--merged") for text in args.merged]
    mixes = [text.strip() for text in args.mix]
    choice = ModelChoice(args.pretrained, adapters, merged, choose_device(args.device))
    if not adapters and not merged:
        add_recorded_adapters(choice, args.results)
    for mix in mixes:
        choice.select(mix)  # check the mix now, before any output
    if args.interactive:
        interactive(choice, args)
    else:
        prompts = args.prompt or own_text_prompts(choice, args.pretrained, list(default_prompts))
        side_by_side(choice, prompts, mixes, args)
