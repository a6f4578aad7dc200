"""What one training step costs at real sizes: time, peak memory and training state, per method and model width.

The models are Llama shapes (grouped-query attention, SwiGLU MLP, SmolLM's
49,152-token vocabulary, tied embeddings), RANDOMLY INITIALISED: nothing here is
trained or evaluated, only costs are measured. A step's time and memory do not
depend on what the weights are, so an untrained model of SmolLM-135M's shape
costs what SmolLM-135M costs.

Per (width, method) one measurement builds the model, prepares the method
(full fine-tuning, layer freezing, LoRA at a few ranks, QLoRA), takes warm-up
steps and then times a few more:

* step time: median wall time of a forward + backward + AdamW step.
* training state: bytes of the trainable parameters, their gradients and
  AdamW's two moments, counted from the tensors (minigpt.training.trainable_state_bytes),
  plus the frozen weights (a 4-bit base counts its packed codes and scales).
* peak memory: the highest the process's resident memory stood during the
  training steps, above where it stood before the model was built (so the
  weights count, building and quantizing them does not); on CUDA torch's
  allocator peak, measured the same way.

Why not tracemalloc: it sees only allocations made through Python's allocator,
and torch allocates tensor memory in C++, so a 500 MB weight would show as a
few bytes. On CPU the honest measure is the operating system's: Linux keeps a
high-water mark of resident memory (VmHWM in /proc/self/status) that writing
"5" to /proc/self/clear_refs resets. Freed memory that the C allocator keeps
for reuse would make a second measurement in the same process read low, so on
CPU every measurement runs in a fresh child process (forked, so torch is not
imported again). On CUDA, torch.cuda.max_memory_allocated is exact for tensors
and is reset between measurements in one process.

Measurements are interleaved (every width and method once, then again), so a
burst of load from other processes spreads over all of them; each figure is
the median over the repeats, with the min-max range.
"""

import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass

import torch

from experiment.real_model.hf_model import CausalLMWithLoss
from lora import LoRAConfig, NF4Linear, apply_lora
from minigpt.training import trainable_state_bytes

VOCAB = 49_152  # SmolLM's tokenizer


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    layers: int = 30

    def llama_config(self):
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=VOCAB, hidden_size=self.hidden, intermediate_size=self.intermediate,
                           num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
                           max_position_embeddings=2048, tie_word_embeddings=True)


# SmolLM-135M's depth and vocabulary at every width; the MLP stays about 8/3 as wide as the model, as in SmolLM.
SHAPES = {
    64: Shape("64 wide (MiniGPT's width)", 64, 176, 2, 1),
    192: Shape("192 wide", 192, 512, 6, 2),
    384: Shape("384 wide", 384, 1024, 6, 2),
    576: Shape("SmolLM-135M (576 wide)", 576, 1536, 9, 3),
    960: Shape("SmolLM-360M's width (960, 30 layers)", 960, 2560, 15, 5),
}
QUICK_WIDTHS, FULL_WIDTHS = (64, 192, 384, 576), (64, 192, 384, 576, 960)
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
METHODS = {  # name -> (LoRA config or None, what trains)
    "full fine-tuning": None,
    "layer freezing": None,
    "LoRA r=4": LoRAConfig(r=4, lora_alpha=8, target_modules=ATTENTION),
    "LoRA r=16": LoRAConfig(r=16, lora_alpha=32, target_modules=ATTENTION),
    "LoRA r=64": LoRAConfig(r=64, lora_alpha=128, target_modules=ATTENTION),
    "QLoRA r=16": LoRAConfig(r=16, lora_alpha=32, target_modules=ATTENTION, quantize_base="all"),
}


@dataclass
class StepCosts:
    width: int
    method: str
    total_parameters: int
    trainable_parameters: int
    weights_bytes: int  # every weight the model holds, frozen ones included (4-bit ones as stored)
    training_state_bytes: int  # trainable parameters + gradients + AdamW moments
    peak_memory_bytes: int | None  # rise of resident memory (CPU) or allocator peak (CUDA) over the measurement
    step_seconds: list[float]


def prepare(lm, method: str) -> None:
    """Decide what trains: everything, the top half of the decoder layers (+ final norm), or LoRA's A and B."""
    if method == "full fine-tuning":
        return
    if method == "layer freezing":
        for parameter in lm.parameters():
            parameter.requires_grad_(False)
        layers = lm.model.layers
        for module in [*layers[len(layers) // 2:], lm.model.norm]:
            for parameter in module.parameters():
                parameter.requires_grad_(True)
        return
    apply_lora(lm, METHODS[method])


def weights_bytes(model) -> int:
    unique = {id(p): p for p in model.parameters()}.values()
    packed = sum(b.numel() * b.element_size() for m in model.modules() if isinstance(m, NF4Linear) for b in m.buffers())
    return sum(p.numel() * p.element_size() for p in unique) + packed


def rank_fits(width: int, method: str) -> bool:
    """LoRA's rank may not exceed min(in, out) of any target (k_proj and v_proj are the narrowest)."""
    config, shape = METHODS[method], SHAPES[width]
    return config is None or config.r <= shape.kv_heads * (shape.hidden // shape.heads)


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _warm_up(method: str, device: str) -> None:
    """One step of the same method on a tiny Llama: the first step of a process pages in tens of MB of torch's own code."""
    from transformers import LlamaConfig, LlamaForCausalLM

    # 128 wide with 2 key/value heads of 64: every rank in METHODS fits its narrowest projection
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))
    prepare(lm, method)
    model = CausalLMWithLoss(lm, 8).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.zeros(1, 8, dtype=torch.long, device=device)
    model(x, x)[1].backward()
    optimizer.step()


def measure(width: int, method: str, batch_size: int, sequence: int, warmup: int, steps: int, device: str) -> StepCosts:
    """Build, prepare and step one model in this process; the caller gives it a fresh process on CPU."""
    from transformers import LlamaForCausalLM

    on_cuda = device.startswith("cuda")
    _warm_up(method, device)  # library code and thread pools loaded now, so the peak below is the model's alone
    if on_cuda:
        torch.cuda.empty_cache()
        start_bytes = torch.cuda.memory_allocated()
    else:
        start_bytes = 1024 * _resident_kib("VmRSS")
    torch.manual_seed(0)
    lm = LlamaForCausalLM(SHAPES[width].llama_config())
    prepare(lm, method)  # QLoRA quantizes here: its float32 weights are freed before the peak is reset below
    model = CausalLMWithLoss(lm, sequence).to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    # The peak counts from before the model was built (so the weights are in it) but only over the training steps:
    # building and quantizing a model is a one-off that a real run does differently (QLoRA loads 4-bit weights directly).
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the resident high-water mark to the current resident size
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(VOCAB, (batch_size, sequence), generator=generator).to(device)  # random tokens: costs only
    y = torch.randint(VOCAB, (batch_size, sequence), generator=generator).to(device)
    times, state = [], 0
    for step in range(warmup + steps):
        if on_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        if step == warmup + steps - 1:
            state = trainable_state_bytes(model, optimizer)  # gradients still held: the state at its largest
        optimizer.zero_grad(set_to_none=True)
        if on_cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    if on_cuda:
        peak = torch.cuda.max_memory_allocated() - start_bytes
    else:
        peak = 1024 * _resident_kib("VmHWM") - start_bytes
    unique = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in unique) + sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, NF4Linear))
    return StepCosts(width, method, total, sum(p.numel() for p in trainable), weights_bytes(model), state, peak, times)


def _child(connection, threads: int, arguments: tuple) -> None:
    torch.set_num_threads(threads)
    try:
        connection.send(asdict(measure(*arguments)))
    except Exception as error:  # reported to the parent, which says which measurement failed
        connection.send({"error": f"{type(error).__name__}: {error}"})
    connection.close()


def measure_in_fresh_process(threads: int, arguments: tuple) -> dict:
    """measure(*arguments) in a forked child, so its peak memory starts from a clean slate."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, threads, arguments))
    child.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        result = {"error": "the measuring process died (out of memory?)"}
    child.join()
    return result


def run_cost_measurements(widths, methods, repeats: int, batch_size: int, sequence: int, device: str, threads: int,
                          progress=None) -> list[dict]:
    """Every (width, method) measured `repeats` times, interleaved; one record per measurement."""
    plan = [(width, method) for width in widths for method in methods if rank_fits(width, method)]
    records = []
    for repeat in range(repeats):
        for width, method in plan:
            arguments = (width, method, batch_size, sequence, 1, 2, device)
            if device.startswith("cuda"):
                record = asdict(measure(*arguments))
            else:
                record = measure_in_fresh_process(threads, arguments)
            record.update(width=width, method=method, repeat=repeat)
            records.append(record)
            if progress is not None:
                progress.update(1)
    return records


def summarise(records: list[dict]) -> list[dict]:
    """Per (width, method): the counts, and median with min-max of step time and peak memory over the repeats."""
    rows = []
    keys = list(dict.fromkeys((r["width"], r["method"]) for r in records))
    for width, method in keys:
        runs = [r for r in records if (r["width"], r["method"]) == (width, method) and "error" not in r]
        if not runs:
            rows.append({"width": width, "method": method, "error": next(r["error"] for r in records
                                                                         if (r["width"], r["method"]) == (width, method))})
            continue
        step_ms = [1000 * statistics.median(r["step_seconds"]) for r in runs]
        peaks = [r["peak_memory_bytes"] / 2**20 for r in runs]
        rows.append({"width": width, "method": method, "repeats": len(runs), "total_parameters": runs[0]["total_parameters"],
                     "trainable_parameters": runs[0]["trainable_parameters"], "weights_mib": runs[0]["weights_bytes"] / 2**20,
                     "training_state_mib": runs[0]["training_state_bytes"] / 2**20,
                     "step_ms": statistics.median(step_ms), "step_ms_range": (min(step_ms), max(step_ms)),
                     "peak_mib": statistics.median(peaks), "peak_mib_range": (min(peaks), max(peaks))})
    return rows
