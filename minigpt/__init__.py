"""MiniGPT: a small GPT written from scratch for learning how fine-tuning and LoRA work."""

from minigpt.config import GPTConfig
from minigpt.model import MiniGPT
from minigpt.tokenizer import WordTokenizer

__all__ = ["GPTConfig", "MiniGPT", "WordTokenizer"]
