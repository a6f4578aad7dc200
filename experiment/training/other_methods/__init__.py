"""The methods before and beside LoRA (peft_methods/) as fine-tuning runs: train_finetune.py --method adapters,
prefix, prompt, bitfit, ia3 (or others, all five).

Reading order:
  catalog.py           each method's name, result folder, default learning rate, label and flags
  preparation.py       what trains: the method applied to the grown base, the new words' rows unfrozen
  result_directory.py  the small result folder each saves (and the merged model for BitFit and IA3), loaded back onto the base
"""
