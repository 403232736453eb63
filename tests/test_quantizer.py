"""Training behaviour of the EMA codebooks: k-means start, EMA step, dead-code expiry."""

from __future__ import annotations

import torch

from dmcodec_cli.quantizer import EuclideanCodebook, kmeans, nearest_code


def test_nearest_code_equals_the_original_formula_on_near_ties():
    """The in-place form must pick what the original's -(|x|^2 - 2 x.e + |e|^2).max() picks, bit for bit."""
    torch.manual_seed(0)
    embed = torch.randn(256, 64)
    embed[100] = embed[3]  # an exact tie
    x = torch.cat([torch.randn(2000, 64), embed[:64] + 1e-6 * torch.randn(64, 64), embed[:8]])
    embed_t = embed.t()
    original = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed_t + embed_t.pow(2).sum(0, keepdim=True))
    assert torch.equal(nearest_code(x, embed), original.max(dim=-1).indices)


def test_nearest_code_takes_the_first_of_equal_scores():
    embed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    x = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]])
    assert nearest_code(x, embed).tolist() == [0, 1, 0]


def test_kmeans_ends_at_a_fixed_point_of_lloyds_iteration():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0], [5.0, 5.0]])
    samples = torch.cat([c + 0.5 * torch.randn(50, 2) for c in centres])
    means, counts = kmeans(samples, 4, 30)
    assignment = nearest_code(samples, means)
    assert counts.sum() == 200 and torch.equal(torch.bincount(assignment, minlength=4), counts)
    for k in range(4):  # every mean is the average of the samples nearest to it
        torch.testing.assert_close(means[k], samples[assignment == k].mean(0))
    assert ((samples - means[assignment]) ** 2).sum() < ((samples - samples.mean(0)) ** 2).sum() / 4


def trained_codebook(size: int = 64, rows: int = 16, steps: int = 30) -> EuclideanCodebook:
    """A codebook trained on batches with fewer rows than codes (as the official batch of 900 frames has)."""
    torch.manual_seed(0)
    codebook = EuclideanCodebook(dim=4, codebook_size=size).train()
    data = torch.randn(steps, 1, rows, 4)
    for batch in data:
        codebook(batch)
    return codebook


def test_a_used_codebook_is_not_reseeded_when_batches_are_smaller_than_it():
    codebook = trained_codebook()
    assert codebook.inited.item() == 1.0
    before = codebook.embed.clone()
    codebook(torch.randn(1, 16, 4))
    moved = (codebook.embed - before).norm(dim=1) > 1.0  # an EMA step moves a code a little; a re-seed jumps
    assert moved.sum() <= 2, "codes in use were taken for dead"


def test_a_code_unused_for_long_is_reseeded_from_the_batch_and_keeps_its_new_value():
    codebook = trained_codebook()
    codebook.embed[5] = 1e3  # far from every input: never chosen again
    codebook.embed_avg[5] = 1e3 * codebook.cluster_size[5]
    for _ in range(600):  # ~460 steps bring an unused code under 1 % of the mean usage at decay 0.99
        codebook(torch.randn(1, 16, 4))
    assert codebook.embed[5].abs().max() < 10, "the dead code was not re-seeded"
    value = codebook.embed[5].clone()
    codebook(torch.randn(1, 16, 4))
    assert (codebook.embed[5] - value).norm() < 0.5  # the next EMA step does not undo the replacement
    total = codebook.cluster_size.sum()
    smoothed = (codebook.cluster_size + 1e-5) / (total + 64 * 1e-5) * total
    torch.testing.assert_close(codebook.embed, codebook.embed_avg / smoothed[:, None])
