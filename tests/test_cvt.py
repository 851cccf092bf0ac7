"""CVT: the reference reaches the target only through the attention, the attention is the stated formula (every
position, or convex tokens), both directions, unshared encoders, the CAM rule and the keyed dropout."""

from __future__ import annotations

import math

import pytest
import torch

from bilatcf.errors import ConfigError
from bilatcf.models.cvt import CVT
from bilatcf.models.cvt.network import CrossViewAttention, SpatialTokenizer, keyed_dropout
from bilatcf.models.kit import SampleRandom
from tests.conftest import random_images

TINY = {"backbone": "test_resnet", "output_stride": 16}


def tiny_cvt(**kwargs) -> CVT:
    torch.manual_seed(0)
    return CVT(**{**TINY, "dropout": 0.0, **kwargs}).eval()


def maps(model: CVT, target: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = model(target, reference)
    return out.logits, out.target_features, out.reference_features


def zero_(linear: torch.nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()


@pytest.mark.parametrize("combine", ["add", "layernorm"])
def test_the_reference_reaches_the_target_only_through_the_attention(combine):
    model = tiny_cvt(combine=combine)
    target, reference, other = random_images(0), random_images(1), random_images(2)
    _, with_attention, _ = maps(model, target, reference)
    _, changed, _ = maps(model, target, other)
    assert not torch.allclose(with_attention, changed), "the attention carries the reference into the target's map"
    zero_(model.network.target_attention.merge)  # A = 0: the target's map is its own
    logits, target_map, _ = maps(model, target, reference)
    other_logits, other_map, _ = maps(model, target, other)
    assert torch.equal(target_map, other_map)
    # The logit still reads the reference's own pooled features through the classifier's reference half...
    assert not torch.allclose(logits, other_logits)
    with torch.no_grad():
        model.network.classifier.weight[0, model.network.out_channels :] = 0
    # ... and with that half zeroed as well, the reference has no effect at all.
    assert torch.equal(model(target, reference).logits, model(target, other).logits)


def test_both_directions_attend():
    model = tiny_cvt()
    target, reference, other = random_images(3), random_images(4), random_images(5)
    _, _, reference_map = maps(model, target, reference)
    _, _, changed = maps(model, other, reference)
    assert not torch.allclose(reference_map, changed), "the reference attends to the target"
    zero_(model.network.reference_attention.merge)
    _, target_map, reference_map = maps(model, target, reference)
    other_target_map, other_reference_map = maps(model, other, reference)[1:]
    assert torch.equal(reference_map, other_reference_map)
    assert not torch.allclose(target_map, other_target_map), "the other direction is untouched"


def attention_by_formula(layer: CrossViewAttention, view: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """softmax(Q_h K_hᵀ / √d) V per head, heads concatenated and merged, written out."""
    queries = view.flatten(2).transpose(1, 2)
    values = layer.keys_and_values(other)
    q = layer.query(queries).unflatten(-1, (layer.heads, layer.head_dim))  # [B, L, heads, d]
    k = layer.key(values).unflatten(-1, (layer.heads, layer.head_dim))  # [B, S, heads, d]
    weights = torch.softmax(torch.einsum("blhd,bshd->bhls", q, k) / math.sqrt(layer.head_dim), dim=-1)
    heads = torch.einsum("bhls,bsc->blhc", weights, values)
    return layer.merge(heads.flatten(2))


@pytest.mark.parametrize("variant", ["pixel", "token"])
def test_attention_is_the_scaled_dot_product_over_the_other_view(variant):
    torch.manual_seed(0)
    layer = CrossViewAttention(8, heads=3, head_dim=32, variant=variant, tokens=4, combine="add", dropout=0.0)
    view, other = torch.randn(2, 8, 5, 3), torch.randn(2, 8, 4, 6)
    expected = attention_by_formula(layer, view, other)
    assert torch.allclose(layer.attend(view, other), expected, atol=1e-5)
    combined = layer(view, other)
    assert torch.allclose(combined, view + expected.transpose(1, 2).reshape(view.shape), atol=1e-5)


def test_pixel_variant_attends_to_every_position():
    torch.manual_seed(0)
    layer = CrossViewAttention(8, heads=2, head_dim=32, variant="pixel", tokens=4, combine="add", dropout=0.0)
    view, other = torch.randn(1, 8, 3, 2), torch.randn(1, 8, 4, 5)
    assert layer.keys_and_values(other).shape == (1, 20, 8)  # one key per position of the other view
    base = layer.attend(view, other)
    for position in range(20):
        moved = other.clone()
        moved.view(1, 8, 20)[..., position] += 1.0
        changed = (layer.attend(view, moved) - base).abs().amax(dim=-1)
        assert (changed > 1e-6).all(), f"some query positions ignore key position {position}"


def test_tokens_are_convex_combinations_of_the_features():
    torch.manual_seed(0)
    tokenizer = SpatialTokenizer(6, tokens=5)
    features = torch.randn(2, 30, 6)
    tokens, weights = tokenizer(features)
    assert tokens.shape == (2, 5, 6) and weights.shape == (2, 5, 30)
    assert (weights > 0).all() and torch.allclose(weights.sum(-1), torch.ones(2, 5))
    assert torch.allclose(tokens, weights @ features, atol=1e-6)
    low, high = features.amin(dim=1, keepdim=True), features.amax(dim=1, keepdim=True)
    assert ((tokens >= low - 1e-6) & (tokens <= high + 1e-6)).all()
    layer = CrossViewAttention(6, heads=2, head_dim=32, variant="token", tokens=5, combine="add", dropout=0.0)
    assert layer.keys_and_values(torch.randn(2, 6, 10, 3)).shape == (2, 5, 6)  # T keys, whatever the map size


def test_encoders_are_unshared_unless_asked():
    unshared, shared = tiny_cvt(), tiny_cvt(shared_encoder=True)
    target, reference = unshared.network.target_encoder, unshared.network.reference_encoder
    assert target is not reference
    pairs = list(zip(target.parameters(), reference.parameters(), strict=True))
    assert all(a.data_ptr() != b.data_ptr() for a, b in pairs)
    assert any(not torch.equal(a, b) for a, b in pairs), "the two encoders are initialised independently"
    assert shared.network.reference_encoder is shared.network.target_encoder
    encoder_size = sum(p.numel() for p in target.parameters())
    total = sum(p.numel() for p in unshared.parameters())
    assert total - sum(p.numel() for p in shared.parameters()) == encoder_size


def test_cam_is_where_the_targets_share_of_the_logit_comes_from():
    model = tiny_cvt()
    out = model(random_images(6, size=4), random_images(7, size=4))
    channels = model.network.out_channels
    weight, bias = model.network.classifier.weight[0], model.network.classifier.bias
    reference_share = out.reference_features.mean(dim=(2, 3)) @ weight[channels:]
    target_share = out.logits - reference_share - bias
    sign = torch.where(out.logits >= 0, 1.0, -1.0)
    assert out.cam.shape == (4, 1, *out.target_features.shape[-2:])
    assert torch.allclose(out.cam.mean(dim=(1, 2, 3)), sign * target_share, atol=1e-5)


def test_dropout_masks_follow_the_samples_not_their_batch():
    x = torch.ones(2, 7, 5)
    first = keyed_dropout(x, 0.5, SampleRandom(0, 3, [10, 11], 0, "cpu").rand, training=True)
    swapped = keyed_dropout(x, 0.5, SampleRandom(0, 3, [11, 10], 0, "cpu").rand, training=True)
    assert torch.equal(first, swapped.flip(0))
    assert set(first.unique().tolist()) <= {0.0, 2.0} and (first == 0).any()
    assert torch.equal(keyed_dropout(x, 0.5, None, training=False), x)


def test_training_step_draws_the_dropout_masks_per_sample(tiny_datamodule_factory):
    model = CVT(**TINY, dropout=0.5)
    batch = next(iter(tiny_datamodule_factory().train_dataloader()))
    model.train()
    first = model.training_step(batch, 0)
    assert torch.equal(model.training_step(batch, 0), first)  # the same (seed, iteration, samples): the same masks
    model.iteration += 1
    assert not torch.equal(model.training_step(batch, 0), first)


@pytest.mark.parametrize(
    ("option", "value"), [("variant", "patch"), ("combine", "mul"), ("heads", 0), ("tokens", 0), ("dropout", 1.0)]
)
def test_bad_options_say_what_to_change(option, value):
    with pytest.raises(ConfigError, match=f"model.{option}"):
        CVT(**TINY, **{option: value})
