"""One LoRA fine-tuning run on a Hugging Face causal LM: what finetune_hf.py runs.

The steps are the ones MiniGPT's LoRA run takes (experiment/training/finetuning.py),
on a model someone else wrote:

  1. load the model and its own tokenizer (hf_model.py), check the targets exist;
  2. tokenize the text file with that tokenizer (text_data.py);
  3. measure the validation loss of the untouched model;
  4. `apply_lora(model, LoRAConfig(...))`: the same call, the same LoRALinear, on
     `model.layers.N.self_attn.q_proj` instead of `blocks.N.attention.q_proj`;
  5. train with minigpt's one training loop (minigpt/training.py), unchanged;
  6. measure the validation loss again, merge, and check the merged model
     computes what the adapter on its base computes;
  7. save, atomically in one directory: adapter/ in PEFT's layout, merged/ with
     save_pretrained (plus the tokenizer), and metrics.json.
"""

import json
from pathlib import Path

import torch

from experiment.real_model.hf_model import CausalLMWithLoss, check_targets, context_length, load_causal_lm
from experiment.real_model.peft_adapter import write_peft_adapter
from experiment.real_model.text_data import tokenize_text_file
from lora import LoRAConfig, apply_lora, count_parameters, merge_lora
from minigpt.plumbing.atomic_writes import ensure_writable_dir, new_run_id, refuse_foreign_directory, write_directory_atomically
from minigpt.device import choose_device
from minigpt.evaluation import stream_loss
from minigpt.plumbing.flags import apply_threads
from minigpt.training import TrainConfig, train

OUT_FILES = {"adapter", "merged", "metrics.json"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def lora_config_from(args) -> LoRAConfig:
    return LoRAConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=list(args.target_modules),
                      use_rslora=args.use_rslora, use_dora=args.use_dora).validate()


@torch.no_grad()
def merge_gap(adapted: CausalLMWithLoss, merged_lm, sample: torch.Tensor) -> float:
    """max |logit(adapter on base) - logit(merged model)| on one window: rounding alone if the merge is right."""
    return (adapted(sample)[0] - merged_lm(input_ids=sample).logits.float()).abs().max().item()


def run_hf_finetuning(args) -> dict:
    """Fine-tune with LoRA and save; return the figures the script prints (also written to metrics.json)."""
    apply_threads(getattr(args, "threads", None))
    device = choose_device(args.device)
    config = lora_config_from(args)
    ensure_writable_dir(Path(args.out).parent)
    refuse_foreign_directory(args.out, OUT_FILES)  # fail now, not after the training
    lm, tokenizer = load_causal_lm(args.model, args.allow_download, DTYPES[args.dtype])
    check_targets(lm, config.target_modules)
    block_size = min(args.block_size, context_length(lm))
    streams = tokenize_text_file(args.text, tokenizer, block_size)
    print(f"model: {args.model}, {type(lm).__name__}, {count_parameters(lm)['total']:,} parameters, {args.dtype}, on {device}")
    print(f"text: {args.text}, {len(streams.train):,} training and {len(streams.val):,} validation tokens "
          f"({len(tokenizer):,}-token vocabulary of the model's own tokenizer)")

    model = CausalLMWithLoss(lm, block_size).to(device)
    before = stream_loss(model, streams.val, device)
    total_before = count_parameters(lm)["total"]
    torch.manual_seed(args.seed)  # A's random start depends on the seed alone
    wrapped = apply_lora(lm, config)
    counts = count_parameters(lm)
    print(f"LoRA on {len(wrapped)} layers ({', '.join(config.target_modules)}): trainable parameters "
          f"{total_before:,} -> {counts['trainable']:,} ({counts['trainable_percent']:.2f}%)")

    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                               warmup_steps=min(TrainConfig.warmup_steps, max(1, args.steps // 10)),
                               eval_interval=args.eval_interval, eval_batches=args.eval_batches, seed=args.seed)
    result = train(model, streams.train, streams.val, train_config, device, "LoRA", not args.no_progress)
    after = stream_loss(model, streams.val, device)
    merged = merge_lora(lm)
    gap = merge_gap(model, merged, streams.val[:block_size].unsqueeze(0).to(device))

    metrics = {
        "run_id": new_run_id(), "written_by": "finetune_hf.py", "model": args.model, "text": args.text, "dtype": args.dtype,
        "lora": config.to_dict(), "lora_layers": sorted(wrapped), "parameters": counts, "block_size": block_size,
        "val_loss_before": before, "val_loss_after": after, "merge_max_logit_gap": gap,
        **{k: v for k, v in result.to_dict().items() if k != "history"}, "history": result.history,
    }

    def write_files(directory: Path) -> None:
        (directory / "adapter").mkdir()
        write_peft_adapter(lm, config, args.model, directory / "adapter")
        merged.cpu().save_pretrained(directory / "merged")
        tokenizer.save_pretrained(directory / "merged")
        (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")

    out = write_directory_atomically(args.out, write_files)
    name = "DoRA" if config.use_dora else "LoRA"
    name += " + rsLoRA" if config.use_rslora else ""
    return {**metrics, "out": out, "label": f"{name} ({', '.join(config.target_modules)})"}

