"""The study runner: many real fine-tuning runs on one base, each cached on disk by its settings.

A run is one call of experiment/training/finetuning.py's `finetune_one` (the same code
train_finetune.py runs) with the settings of one `RunSettings`; nothing is
saved but its measured figures. Each run's figures are written to
dist/experiments/<study>/runs/<key>.json, where the key is a hash of the
settings and of the base model's and data files' fingerprints, so an
interrupted study resumes where it stopped, a finished one re-plots in
seconds, and a run already made by another study is reused, not repeated.
"""

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import math
import statistics
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiment.training.data import prepare_finetune_data, resolve_data_paths
from experiment.training.finetuning import finetune_one
from experiment.training.methods import METHODS, NEW_ROWS
from experiment.training.other_methods.catalog import OTHER_METHODS
from experiment.training.variants import VARIANTS, variant_config
from lora import LoRAConfig, LoRALinear
from lora.config import DEFAULT_TARGETS
from minigpt.plumbing.atomic_writes import atomic_write_text
from minigpt.checkpoint import load_model_dir, model_fingerprint
from minigpt.device import choose_device
from minigpt.plumbing.errors import UserError
from minigpt.plumbing.reading import check_input_file, read_json_file, require_number

STUDY_METHODS = {**METHODS, "rows": NEW_ROWS, **OTHER_METHODS}
# Per-run figures summarised over seeds: (key, label in tables).
FIGURES = (("new_val_loss", "new val loss"), ("new_probes", "new probes %"), ("old_val_loss", "old val loss"),
           ("old_probes", "old probes %"), ("train_seconds", "train time (s)"), ("tokens_per_second", "tokens/s"),
           ("trainable_parameters", "trainable params"), ("training_state_bytes", "training state (bytes)"),
           ("total_training_bytes", "training state + frozen weights (bytes)"), ("delta_norm", "‖ΔW‖ (Frobenius)"))


@dataclass(frozen=True)
class RunSettings:
    """Everything that makes one run different from another. lr None: the method's default."""

    method: str
    seed: int = 1337
    lr: float | None = None
    rank: int = LoRAConfig.r
    alpha: float = LoRAConfig.lora_alpha
    targets: tuple[str, ...] = DEFAULT_TARGETS
    rslora: bool = False
    variant: str | None = None  # one of experiment/training/variants.py's VARIANTS (rslora, loraplus, dora, qlora), or None
    replay: float = 0.0
    steps: int = 150
    batch_size: int = 32

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else STUDY_METHODS[self.method].lr

    def canonical(self) -> dict:
        """The settings as they matter: lr resolved, LoRA fields dropped for methods that have no LoRA."""
        values = {**dataclasses.asdict(self), "lr": self.learning_rate, "targets": list(self.targets)}
        if self.method != "lora":
            for name in ("rank", "alpha", "targets", "rslora"):
                values.pop(name)
        if self.variant is None:
            values.pop("variant")  # runs cached before variants existed keep their keys
        return values


def rslora_supported() -> bool:
    """Whether lora's LoRAConfig has rsLoRA (scaling alpha / sqrt(r)); studies add it only if so."""
    return "use_rslora" in {f.name for f in dataclasses.fields(LoRAConfig)}


class StudyContext:
    """The base model, the data and the cache directory every run of a study shares."""

    def __init__(self, pretrained: str, data_flags: Namespace, out: str | Path, device: str = "cpu"):
        check_input_file(Path(pretrained) / "model.pt", "pretrained model", "run python train_pretrain.py first")
        self.device = choose_device(device)
        self.base, tokenizer = load_model_dir(pretrained, hint="run python train_pretrain.py first")
        resolve_data_paths(data_flags, pretrained)  # defaults: the recorded pretraining corpus, probes beside each corpus
        self.data_flags = data_flags
        self.data = prepare_finetune_data(tokenizer, data_flags.data, data_flags.probes, data_flags.pretrain_corpus,
                                          data_flags.pretrain_probes, self.base.config.block_size)
        digest = hashlib.sha256(model_fingerprint(self.base).encode())
        for name in ("data", "probes", "pretrain_corpus", "pretrain_probes"):
            if getattr(data_flags, name) is not None:  # a probe file may be absent (skipped) for a user's own corpus
                digest.update(Path(getattr(data_flags, name)).read_bytes())
        self.fingerprint = digest.hexdigest()
        self.out = Path(out)

    def key(self, settings: RunSettings) -> str:
        text = json.dumps({"settings": settings.canonical(), "base_and_data": self.fingerprint}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def lora_config_for(settings: RunSettings) -> LoRAConfig:
    extra = {"use_rslora": settings.rslora} if rslora_supported() else {}
    config = LoRAConfig(r=settings.rank, lora_alpha=settings.alpha, target_modules=list(settings.targets), **extra).validate()
    return variant_config(config, settings.variant) if settings.variant else config


def weight_changes(model, base) -> dict[str, float]:
    """||W_after - W_before|| (Frobenius) of every attention and MLP matrix, whatever the method."""
    before = {name: module.weight for name, module in base.named_modules() if isinstance(module, torch.nn.Linear) and ".blocks." in f".{name}"}
    changes = {}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            after = module.base.weight + module.delta_weight()
        elif isinstance(module, torch.nn.Linear) and name in before:
            after = module.weight
        else:
            continue
        changes[name] = torch.linalg.matrix_norm(after.detach().cpu().double() - before[name].detach().double()).item()
    return changes


def run_one(settings: RunSettings, context: StudyContext) -> dict:
    """Fine-tune once with these settings and return the measured figures (nothing is saved)."""
    args = Namespace(seed=settings.seed, steps=settings.steps, batch_size=settings.batch_size, lr=settings.learning_rate,
                     eval_interval=settings.steps, train_last_k=None, no_progress=True, replay=settings.replay,
                     pretrain_corpus=context.data_flags.pretrain_corpus)
    lora_config = lora_config_for(settings) if settings.method == "lora" else LoRAConfig()
    with contextlib.redirect_stdout(io.StringIO()):  # finetune_one's headline; the study prints its own progress
        model, record = finetune_one(STUDY_METHODS[settings.method], context.base, context.data, args, lora_config, context.device)
    after = record["after"]
    frozen_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    changes = weight_changes(model, context.base)
    return {
        "settings": settings.canonical(), "label": run_label(settings),
        "new_val_loss": after["finetune_val_loss"], "new_probes": 100 * after["finetune_probe_accuracy"],
        "old_val_loss": after["pretrain_val_loss"], "old_probes": 100 * after["pretrain_probe_accuracy"],
        "train_seconds": record["train_seconds"], "tokens_per_second": record["tokens_per_second"],
        "trainable_parameters": record["trainable_parameters"], "training_state_bytes": record["trainable_state_bytes"],
        "frozen_bytes": frozen_bytes, "total_training_bytes": frozen_bytes + record["trainable_state_bytes"],
        "delta_norm": math.sqrt(sum(v * v for v in changes.values())), "delta_norms": changes,
        "capital_of_france": next((r["predicted"] for r in after["pretrain_probe_results"] if "france" in r["prompt"]), None),
    }


def run_label(settings: RunSettings) -> str:
    if settings.method != "lora":
        return STUDY_METHODS[settings.method].label
    targets = "" if tuple(settings.targets) == DEFAULT_TARGETS else f" {'+'.join(t.removesuffix('_proj') for t in settings.targets)}"
    prefix = VARIANTS[settings.variant][1] if settings.variant else "LoRA"
    return f"{prefix} r={settings.rank}{targets}"


def run_grid(study: str, grid: list[RunSettings], context: StudyContext, show_progress: bool = True) -> list[dict]:
    """Every run of the grid, from the cache where it exists; a bar shows runs done and the time left."""
    if not grid:
        raise UserError(f"the {study} grid is empty; give at least one seed (--seeds) and one value per swept setting")
    runs_dir = context.out / study / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    records, missing = {}, []
    for settings in dict.fromkeys(grid):  # same settings twice: run once
        key = context.key(settings)
        cached = [runs_dir / f"{key}.json", *sorted(context.out.glob(f"*/runs/{key}.json"))]
        found = next((path for path in cached if path.is_file()), None)
        if found is not None:
            records[settings] = read_cached_run(found)
            if found.parent != runs_dir:  # made by another study: keep a copy here so this study stands alone
                atomic_write_text(runs_dir / f"{key}.json", found.read_text(encoding="utf-8"))
        else:
            missing.append((settings, key))
    progress = tqdm(total=len(records) + len(missing), initial=len(records), desc=f"{study}: runs", unit="run",
                    disable=not show_progress, dynamic_ncols=True)
    by_key = {}  # two settings with one key (lr None and the same rate given): run once
    for settings, key in missing:
        if key in by_key:
            records[settings] = by_key[key]
            progress.update(1)
            continue
        progress.set_postfix_str(run_label(settings) + f" lr {settings.learning_rate:g} seed {settings.seed}")
        record = run_one(settings, context)
        atomic_write_text(runs_dir / f"{key}.json", json.dumps(record, indent=1) + "\n")  # cached the moment it ends
        records[settings] = by_key[key] = record
        progress.update(1)
    progress.close()
    unique = {}  # one record per run: settings that differ only in how the rate is given (None or the default) are one run
    for settings in dict.fromkeys(grid):
        unique.setdefault(json.dumps(records[settings]["settings"], sort_keys=True), records[settings])
    return list(unique.values())


def read_cached_run(path: Path) -> dict:
    """One run's record from the study cache, checked: a damaged or edited file is one line that says how to redo it."""
    try:
        record = read_json_file(path, "study cache file")
        if not isinstance(record, dict) or not isinstance(record.get("settings"), dict) or not isinstance(record.get("label"), str):
            raise ValueError("expected an object with settings and a label")
        for name, _ in FIGURES:
            require_number(record.get(name), name)
    except (ValueError, UserError) as error:
        raise UserError(f"study cache file {path} is damaged ({error}); delete it and that run is redone") from None
    return record


def summarize(values: list[float]) -> dict:
    """Mean, min, max and (sample) standard deviation; std 0 for a single value."""
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def group_over_seeds(records: list[dict]) -> dict[str, dict]:
    """{settings without the seed (as JSON): {"label", "settings", "runs", figure: summary}}."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        settings = {k: v for k, v in record["settings"].items() if k != "seed"}
        groups.setdefault(json.dumps(settings, sort_keys=True), []).append(record)
    return {key: {"label": runs[0]["label"], "settings": json.loads(key), "runs": len(runs),
                  **{name: summarize([run[name] for run in runs]) for name, _ in FIGURES}}
            for key, runs in groups.items()}


def copy_settings(settings: RunSettings, **changes) -> RunSettings:
    return dataclasses.replace(copy.copy(settings), **changes)
