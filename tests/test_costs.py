"""The cost study measures what it says on a tiny Llama shape: counts exact, LoRA's state far below full fine-tuning's."""

import pytest

transformers = pytest.importorskip("transformers")

from experiment.real_model import costs  # noqa: E402
from experiment.real_model.cost_report import write_cost_results  # noqa: E402


@pytest.fixture
def tiny_shape(monkeypatch):
    monkeypatch.setitem(costs.SHAPES, 32, costs.Shape("tiny", hidden=32, intermediate=64, heads=2, kv_heads=1, layers=2))
    monkeypatch.setattr(costs, "VOCAB", 512)
    return 32


def test_lora_trains_and_holds_far_less_than_full_fine_tuning_on_the_same_shape(tiny_shape, tmp_path):
    records = costs.run_cost_measurements([tiny_shape], ["full fine-tuning", "LoRA r=4", "QLoRA r=16"], repeats=1, batch_size=1,
                                          sequence=8, device="cpu", threads=1)
    by_method = {r["method"]: r for r in records}
    assert not any("error" in r for r in records), records
    full, lora, qlora = by_method["full fine-tuning"], by_method["LoRA r=4"], by_method["QLoRA r=16"]
    assert full["trainable_parameters"] == full["total_parameters"]
    # r (in + out) per target and layer: q, o are 32 -> 32, k, v are 32 -> 16 (one key/value head of 16)
    assert lora["trainable_parameters"] == 2 * 4 * (2 * (32 + 32) + 2 * (32 + 16))
    assert lora["training_state_bytes"] == 4 * 4 * lora["trainable_parameters"]  # float32 parameter, gradient, 2 moments
    assert full["training_state_bytes"] == 4 * 4 * full["total_parameters"]
    assert qlora["weights_bytes"] < lora["weights_bytes"]  # the 4-bit base holds fewer bytes than float32
    assert all(r["peak_memory_bytes"] > 0 and len(r["step_seconds"]) == 2 for r in records)
    rows = costs.summarise(records)
    write_cost_results(tmp_path, records, rows, {"device": "cpu", "threads": 1, "repeats": 1, "batch_size": 1, "sequence": 8,
                                                 "machine": "test", "load_note": "test"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costs.png", "results.json", "results.md"]
    assert "randomly initialised" in (tmp_path / "results.md").read_text()


def test_a_rank_wider_than_the_narrowest_target_is_left_out_not_failed(tiny_shape):
    assert costs.rank_fits(tiny_shape, "LoRA r=16") and not costs.rank_fits(tiny_shape, "LoRA r=64")
