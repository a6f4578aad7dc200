"""The experiment: pretraining, three ways to fine-tune, and their comparison, built on `minigpt` and `lora`.

Layers point one way: the top-level scripts call this package, and this
package uses `minigpt` (the model library) and `lora` (LoRA for any
nn.Module). Neither of those knows this package exists.
"""
