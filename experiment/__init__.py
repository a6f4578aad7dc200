"""The experiment: pretraining, fine-tuning three ways (and the variants), comparing, studying and serving,
built on `minigpt` (the model) and `lora` (LoRA for any nn.Module).

Layers point one way: the top-level scripts call this package, and this package
uses `minigpt` and `lora`; neither of those knows this package exists. Inside it,
`training` is the bottom layer and the others build on it, never on each
other:

    training/     pretraining, the fine-tuning methods, the adapter directory  (train_pretrain.py, train_finetune.py)
    comparison/   every model measured from disk, side by side                 (compare.py)
    studies/      many cached runs over seeds and settings, and their plots    (experiments.py)
    serving/      several adapters on one base, generation, the PEFT format    (generate.py, compare_adapters.py, peft_convert.py)
    real_model/   the same lora/ on a Hugging Face model, and LoRA's costs at real sizes (finetune_hf.py, experiments.py costs)
    plots.py      the plotting helpers every part shares

Reading order for a first visit: training/methods.py, training/finetuning.py,
training/adapter.py, comparison/side_by_side.py, then whichever part you need.
"""
