"""rsLoRA (Kalajdzievski 2023): the update is scaled by alpha / sqrt(r) instead of alpha / r."""

import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402

from lora.errors import LoRAError  # noqa: E402
from lora.scaling import lora_scaling  # noqa: E402


@pytest.mark.parametrize("r, alpha, classic, stabilized", [
    (1, 1.0, 1.0, 1.0),  # the two agree at rank 1
    (4, 8.0, 2.0, 4.0),
    (16, 16.0, 1.0, 4.0),
    (64, 16.0, 0.25, 2.0),
    (8, 3.0, 0.375, 3.0 / math.sqrt(8)),
])
def test_scaling_for_several_ranks_and_alphas(r, alpha, classic, stabilized):
    assert lora_scaling(alpha, r, use_rslora=False) == pytest.approx(classic, rel=1e-12)
    assert lora_scaling(alpha, r, use_rslora=True) == pytest.approx(stabilized, rel=1e-12)
    assert lora_scaling(alpha, r) == lora_scaling(alpha, r, use_rslora=False)  # classic LoRA by default


def test_the_rank_stabilized_factor_times_sqrt_r_does_not_depend_on_r():
    # the point of rsLoRA: gamma_r * sqrt(r) stays fixed, while classic LoRA's shrinks like 1 / sqrt(r)
    for r in (1, 2, 8, 32, 128):
        assert lora_scaling(16.0, r, use_rslora=True) * math.sqrt(r) == pytest.approx(16.0)
    assert lora_scaling(16.0, 128) * math.sqrt(128) == pytest.approx(16.0 / math.sqrt(128))


@pytest.mark.parametrize("alpha, r", [(8.0, 0), (8.0, 2.5), (8.0, True), (math.inf, 4), ("8", 4)])
def test_bad_rank_or_alpha_is_a_lora_error(alpha, r):
    with pytest.raises(LoRAError):
        lora_scaling(alpha, r, use_rslora=True)
