"""The SVD analysis on matrices whose rank and spectrum are known."""

import torch

from experiment.studies.intrinsic_rank import share_along, spectrum


def test_a_rank_3_matrix_has_numerical_rank_3_and_rank_4_keeps_all_of_it():
    generator = torch.Generator().manual_seed(0)
    delta = torch.randn(64, 3, generator=generator) @ torch.randn(3, 48, generator=generator)
    result = spectrum(delta)
    assert result["numerical_rank"] == 3
    assert result["rank_for_energy"] <= 3
    assert abs(result["kept_by_rank"] - 1.0) < 1e-9


def test_energy_rank_and_truncation_share_follow_the_singular_values():
    delta = torch.diag(torch.tensor([3.0, 2.0, 1.0, 1.0, 0.0, 0.0]))  # energies 9, 4, 1, 1 of 15
    result = spectrum(delta, energy=0.9, keep_rank=2)
    assert result["singular_values"][:4] == [3.0, 2.0, 1.0, 1.0]
    assert result["rank_for_energy"] == 3  # 13/15 = 0.867 < 0.9 <= 14/15
    assert abs(result["kept_by_rank"] - 13 / 15) < 1e-12
    assert result["numerical_rank"] == 4
    assert abs(result["norm"] - 15**0.5) < 1e-12


def test_a_full_rank_random_matrix_needs_many_singular_values():
    delta = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    assert spectrum(delta)["rank_for_energy"] > 25


def test_weight_decay_like_change_lies_entirely_along_w():
    weight = torch.randn(16, 16, generator=torch.Generator().manual_seed(2))
    assert abs(share_along(-0.03 * weight, weight) - 1.0) < 1e-12
    assert share_along(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)), weight) < 0.2
