"""Training: what train_pretrain.py and train_finetune.py run.

Reading order:
  methods.py         the three methods (full, freeze, LoRA): each only decides which parameters train
  finetuning.py      one fine-tuning run: the base copied, its vocabulary grown, each method trained and saved
  adapter.py         the adapter directory LoRA saves, and loading it back onto its base
  new_token_rows.py  training only the new words' embedding rows
  data.py            the corpora and probes fine-tuning reads, tokenized with the grown vocabulary
  variants.py        rsLoRA, LoRA+, DoRA and QLoRA as runs beside plain LoRA
  replay.py          mixing pretraining windows into fine-tuning batches, against forgetting
  pretraining.py     the tokenizer built and MiniGPT trained from scratch
  other_methods/     bottleneck adapters, prefix, prompt, BitFit and IA3 (peft_methods/) as runs beside LoRA
"""
