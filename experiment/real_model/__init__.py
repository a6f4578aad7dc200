"""From MiniGPT to a real model: this project's `lora/` on a Hugging Face causal LM, and LoRA's costs at real sizes.

Built on `lora` and on `experiment.training`'s plumbing, never on comparison/,
studies/ or serving/ (tests/test_layers.py checks it). Used by finetune_hf.py
and by `python experiments.py costs`.

Reading order:
  hf_model.py       a Hugging Face causal LM and its tokenizer, loaded from a directory or the local cache, checked
  text_data.py      a text file tokenized with the model's own tokenizer, split into training and validation streams
  peft_adapter.py   the adapter written in PEFT's layout (adapter_config.json + adapter_model.safetensors)
  hf_finetuning.py  one fine-tuning run: LoRA applied, the shared training loop, losses before and after, saving
  costs.py          per-step time, memory and training state of each method on randomly initialised Llama shapes
  cost_report.py    the cost study's table and plot
"""
