"""The claims that the Part 1 pages check at build time, as unit tests of hw2lib.

The tests are grouped under the page whose claims they cover, so that a
failing build check can be matched to a failing test.
"""

from __future__ import annotations

import functools
import math

import pytest
import sympy as sp
import torch
import torchvision
from torch import nn

from hw2lib import bn_demos
from hw2lib.bn_demos import (
    affine_statistics,
    batch_dependence,
    batch_of_one,
    bn_dropout_mlp,
    bn_placement_statistics,
    dropout_under_no_grad,
    load_image_batch,
    momentum_update,
    running_stats_under_no_grad,
    set_batchnorm_eval,
)
from hw2lib.models import TinyTransformerBlock, cifar_resnet18
from hw2lib.parameters import (
    compare_exclusion_rules,
    optimizer_param_groups,
    parameter_inventory,
    split_parameters,
    stage_totals,
)
from hw2lib.part1_display import html_table, math_html
from hw2lib.weight_decay import (
    decay_only_step,
    derive_l2_step,
    derive_norm_growth,
    derive_scale_invariance,
    measure_scale_invariance,
)


@functools.cache
def resnet18() -> nn.Module:
    return torchvision.models.resnet18(weights=None)


# ---------------------------------------------------------------------------
# 1(a) BatchNorm before ReLU
# ---------------------------------------------------------------------------


@functools.cache
def placement(source: str) -> bn_demos.PlacementStatistics:
    batch = load_image_batch(64, seed=0, source=source)
    return bn_placement_statistics(batch.images, channels=16, seed=0)


def test_skimage_batch_shape_and_range():
    batch = load_image_batch(10, seed=1, source="skimage")
    assert batch.images.shape == (10, 3, 32, 32)
    assert batch.images.dtype == torch.float32
    assert float(batch.images.min()) >= 0.0
    assert float(batch.images.max()) <= 1.0
    assert "scikit-image" in batch.source
    # Different patches, not one patch repeated.
    assert not torch.equal(batch.images[0], batch.images[4])


def test_image_batch_fixed_by_seed():
    first = load_image_batch(6, seed=3, source="skimage").images
    again = load_image_batch(6, seed=3, source="skimage").images
    other = load_image_batch(6, seed=4, source="skimage").images
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_auto_source_without_cifar(monkeypatch):
    monkeypatch.setattr(bn_demos, "cifar10_jpeg_dir", lambda: None)
    assert "scikit-image" in load_image_batch(4, source="auto").source
    with pytest.raises(FileNotFoundError, match="HW2LIB_CIFAR10_JPEG"):
        load_image_batch(4, source="cifar10")


@pytest.mark.skipif(bn_demos.cifar10_jpeg_dir() is None, reason="CIFAR-10 JPEG copy not on disk")
def test_cifar_batch():
    batch = load_image_batch(8, source="cifar10")
    assert batch.images.shape == (8, 3, 32, 32)
    assert "CIFAR-10" in batch.source


def test_image_batch_rejects_bad_source():
    with pytest.raises(ValueError, match="'imagenet'"):
        load_image_batch(4, source="imagenet")


@pytest.mark.parametrize("source", ["skimage", "auto"])
def test_zeros_entering_bn(source):
    stats = placement(source)
    assert stats.zero_fraction_before == 0.0
    assert 0.3 < stats.zero_fraction_after < 0.7


@pytest.mark.parametrize("source", ["skimage", "auto"])
def test_batch_statistics_after_relu(source):
    stats = placement(source)
    assert (stats.mean_after > 0).all()
    assert (stats.var_after < stats.var_before).all()


def test_next_layer_inputs():
    stats = placement("skimage")
    assert (stats.next_input_before >= 0).all()
    zeros = stats.bn_input_after == 0
    assert (stats.next_input_after[zeros] < 0).all()
    channel0 = stats.next_input_after[:, 0][zeros[:, 0]]
    predicted = -stats.mean_after[0] / torch.sqrt(stats.var_after[0] + 1e-5)
    assert float(channel0.max() - channel0.min()) < 1e-6
    assert float(channel0[0]) == pytest.approx(float(predicted), rel=1e-3)


def test_gamma_beta_set_relu_input():
    z = placement("skimage").bn_input_before[:, :6]
    gamma = torch.tensor([1.0, 1.0, 0.5, 2.0, 1.0, 0.3])
    beta = torch.tensor([0.0, 1.0, -1.0, 0.5, -2.0, 0.3])
    affine = affine_statistics(z, gamma, beta)
    assert torch.allclose(affine.mean, beta, atol=1e-5)
    assert torch.allclose(affine.std, gamma.abs(), rtol=1e-3)
    assert affine.active_fraction.min() < 0.1
    assert affine.active_fraction.max() > 0.7


def test_affine_statistics_rejects_shape():
    with pytest.raises(ValueError, match=r"\(4,\)"):
        affine_statistics(torch.randn(2, 4, 3, 3), torch.ones(3), torch.zeros(4))


# ---------------------------------------------------------------------------
# 1(b) train() and eval()
# ---------------------------------------------------------------------------


@pytest.fixture
def mlp_and_data():
    torch.manual_seed(0)
    return bn_dropout_mlp(), torch.randn(1, 8), torch.randn(15, 8), torch.randn(15, 8)


def test_train_mode_depends_on_batch(mlp_and_data):
    model, x, a, b = mlp_and_data
    model.train()
    assert batch_dependence(model, x, a, b) > 1e-3


def test_eval_mode_independent_of_batch(mlp_and_data):
    model, x, a, b = mlp_and_data
    model.eval()
    assert batch_dependence(model, x, a, b) == 0.0


def test_running_stats_move_under_no_grad(mlp_and_data):
    model, _, a, b = mlp_and_data
    model.train()
    change = running_stats_under_no_grad(model, [a + 2, b + 2, a - 1])
    assert change.mean_change > 1e-2
    assert change.var_change > 0
    assert change.batches_tracked_after - change.batches_tracked_before == 3
    assert change.parameters_changed is False


def test_running_stats_fixed_in_eval(mlp_and_data):
    model, _, a, b = mlp_and_data
    model.eval()
    change = running_stats_under_no_grad(model, [a + 2, b + 2])
    assert change.mean_change == 0.0
    assert change.var_change == 0.0
    assert change.batches_tracked_after == change.batches_tracked_before


def test_running_stats_needs_batchnorm():
    with pytest.raises(ValueError, match="no BatchNorm"):
        running_stats_under_no_grad(nn.Linear(2, 2), [torch.randn(3, 2)])


def test_no_grad_is_not_eval(mlp_and_data):
    model, _, a, _ = mlp_and_data
    model.train()
    with torch.no_grad():
        assert model.training
    assert dropout_under_no_grad(model, a) > 0
    # dropout_under_no_grad restores BatchNorm's training mode.
    assert model[1].training
    model.eval()
    assert dropout_under_no_grad(model, a) == 0.0
    assert model(a).requires_grad


def test_batch_of_one():
    one = batch_of_one(channels=4, size=8)
    assert "Expected more than 1 value per channel" in one.bn1d_error
    assert "Expected more than 1 value per channel" in one.bn2d_1x1_error
    assert one.bn2d_vs_instance_norm < 1e-5
    assert one.bn2d_affine_change < 1e-3
    assert one.eval_affine_change > 1e-3


def test_batch_of_one_runs_in_eval():
    bn = nn.BatchNorm1d(4).eval()
    assert bn(torch.randn(1, 4)).shape == (1, 4)


def test_default_momentum():
    assert nn.BatchNorm2d(3).momentum == 0.1
    assert nn.BatchNorm1d(3).momentum == 0.1


@pytest.mark.parametrize("momentum", [0.1, 0.01, 0.5])
def test_momentum_convention(momentum):
    update = momentum_update(momentum)
    assert torch.allclose(update.running_mean, update.predicted_mean, rtol=1e-5)
    assert torch.allclose(update.running_var, update.predicted_var, rtol=1e-5)


def test_momentum_is_new_batch_weight():
    # From running mean 0 and a batch mean of 10, PyTorch's momentum 0.1 gives 1.0.
    # Reading 0.1 as the old value's weight, as Keras does, would give 9.0.
    bn = nn.BatchNorm1d(1, momentum=0.1).train()
    with torch.no_grad():
        bn(torch.tensor([[9.0], [11.0]]))
    assert bn.running_mean.item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# 1(c) Parameter inventory
# ---------------------------------------------------------------------------


def test_inventory_page_claims():
    model = resnet18()
    rows = parameter_inventory(model)
    total = sum(r.numel for r in rows)
    stages = stage_totals(rows)
    layer4 = next(s for s in stages if s.stage == "layer4")
    assert layer4.numel / total > 0.7
    bn_layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn_layers) == 20
    assert len(list(model.named_buffers())) == 60
    assert 2 * sum(m.num_features for m in bn_layers) == 9_600


def test_cifar_difference_is_stem_and_head():
    model = resnet18()
    cifar = cifar_resnet18()
    stem = cifar.conv1.weight.numel() - model.conv1.weight.numel()
    head = sum(p.numel() for p in cifar.fc.parameters()) - sum(
        p.numel() for p in model.fc.parameters()
    )
    assert stem == 1_728 - 9_408
    assert head == 5_130 - 513_000
    assert 11_173_962 - 11_689_512 == stem + head


# ---------------------------------------------------------------------------
# 1(d) Weight decay
# ---------------------------------------------------------------------------


def test_l2_step_is_shrink_then_step():
    derivation = derive_l2_step()
    assert derivation.holds
    eta, lam = sp.symbols("eta lambda", positive=True)
    assert sp.simplify(derivation.shrink_factor - (1 - eta * lam)) == 0
    # A wrong factor must not pass: the step is not (1 - eta*lambda/2) w - eta grad L.
    w1 = derivation.w[0]
    wrong = (1 - eta * lam / 2) * w1 - (derivation.decoupled[0] - (1 - eta * lam) * w1)
    assert sp.simplify(derivation.step[0] - wrong) != 0


def test_scale_invariance_symbolic():
    derivation = derive_scale_invariance()
    assert derivation.inner_product == 0
    assert derivation.value_change == 0
    assert all(entry == 0 for entry in derivation.gradient_scaling)
    assert derivation.holds


def test_norm_growth():
    growth = derive_norm_growth()
    eta = sp.symbols("eta", positive=True)
    g = sp.symbols("g1:4", real=True)
    w = sp.symbols("w1:4", real=True)
    assert sp.simplify(growth + 2 * eta * sum(gi * wi for gi, wi in zip(g, w, strict=True))) == 0


@pytest.mark.parametrize("alpha", [0.5, 3.0, 17.0])
@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_scale_invariance_measured(alpha, eps):
    m = measure_scale_invariance(alpha, eps=eps)
    assert m.output_change < 100 * eps
    assert abs(m.cosine_grad_weight) < 1e-6
    assert m.gradient_ratio == pytest.approx(1 / alpha, rel=100 * eps)


def test_conv_output_scales_without_bn():
    # Without BatchNorm's normalization, scaling the weight scales the output.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=generator, dtype=torch.float64)
    w = torch.randn(8, 3, 3, 3, generator=generator, dtype=torch.float64)
    out = torch.nn.functional.conv2d(x, w)
    assert not torch.allclose(torch.nn.functional.conv2d(x, 3 * w), out)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_scale_invariance_rejects_alpha(bad):
    with pytest.raises(ValueError, match="alpha"):
        measure_scale_invariance(bad)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_decay_only_step_shrinks(optimizer):
    step = decay_only_step(optimizer, lr=0.1, weight_decay=0.01)
    assert torch.allclose(step.ratio, torch.full_like(step.ratio, 1 - 0.1 * 0.01), rtol=1e-12)


def test_adam_l2_moves_by_lr():
    step = decay_only_step("adam", lr=0.1, weight_decay=0.01)
    moves = (step.after - step.start).abs()
    assert torch.allclose(moves, torch.full_like(moves, 0.1), rtol=1e-3)
    assert not torch.allclose(step.ratio, step.ratio[0].expand_as(step.ratio))


def test_decay_only_step_rejects_name():
    with pytest.raises(ValueError, match="'rmsprop'"):
        decay_only_step("rmsprop")


# ---------------------------------------------------------------------------
# 1(e) Parameter groups
# ---------------------------------------------------------------------------


def test_frozen_backbone_groups():
    model = torchvision.models.resnet18(weights=None)
    model.requires_grad_(False)
    model.fc.requires_grad_(True)
    groups = optimizer_param_groups(model, 5e-4)
    assert [[tuple(p.shape) for p in g["params"]] for g in groups] == [[(1000, 512)], [(1000,)]]


def test_name_rule_misses_downsample():
    model = resnet18()
    split = split_parameters(model)
    missed = {n for n, _ in split.norm} - {n for n, _ in model.named_parameters() if "bn" in n}
    assert missed
    assert all(".downsample.1." in n for n in missed)
    assert sum(p.numel() for n, p in split.norm if n in missed) == 2 * (128 + 256 + 512)


def test_transformer_rule_disagreement():
    rows = {r.rule: r for r in compare_exclusion_rules(TinyTransformerBlock())}
    assert rows["name"].excluded_tensors == 0
    assert set(rows["shape"].extra_sample) == {"layer_scale1", "layer_scale2"}
    assert rows["shape"].missed_tensors == 0
    assert rows["module_type"].excluded_numel == 490
    assert rows["module_type"].norm_numel_excluded == 3 * 2 * 32


# ---------------------------------------------------------------------------
# Exercises
# ---------------------------------------------------------------------------


def test_resnet34_counts():
    split = split_parameters(torchvision.models.resnet34(weights=None))
    assert sum(split.counts().values()) == 21_797_672
    assert split.numel("norm") == 17_024
    assert split.numel("bias") == 1_000


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v3_small"])
def test_name_rule_catches_nothing(name):
    model = getattr(torchvision.models, name)(weights=None)
    rows = {r.rule: r for r in compare_exclusion_rules(model)}
    assert rows["name"].norm_numel_excluded == 0
    assert rows["module_type"].norm_numel_excluded == split_parameters(model).numel("norm") > 0
    assert rows["shape"].missed_tensors == 0
    assert rows["shape"].extra_tensors == 0


def test_set_batchnorm_eval_allows_batch_of_one():
    torch.manual_seed(0)
    model = bn_dropout_mlp().train()
    layers = set_batchnorm_eval(model)
    assert len(layers) == 1
    before = layers[0].running_mean.clone()
    x = torch.randn(1, 8)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert first.shape == (1, 3)
    assert not torch.equal(first, second)
    assert torch.equal(layers[0].running_mean, before)
    model.train()
    assert layers[0].training


def test_group_norm_batch_independent():
    torch.manual_seed(0)
    model = cifar_resnet18(width=16, norm_layer=lambda c: nn.GroupNorm(8, c)).train()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        alone = model(images[:1])
        in_batch = model(images)[:1]
    assert torch.allclose(alone, in_batch, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("momentum", "expected"), [(0.1, 44), (0.01, 459)])
def test_batches_until_one_percent(momentum, expected):
    assert math.ceil(math.log(0.01) / math.log(1 - momentum)) == expected
    bn = nn.BatchNorm1d(1, momentum=momentum).train()
    batch = torch.tensor([[0.0], [2.0]])
    steps = 0
    with torch.no_grad():
        while bn.running_mean.item() <= 0.99:
            bn(batch)
            steps += 1
    assert steps == expected


# ---------------------------------------------------------------------------
# Display helpers
# ---------------------------------------------------------------------------


def test_html_table_formats_and_escapes():
    table = html_table(["name", "count"], [["<a>", 11_689_512]])
    assert "11,689,512" in table
    assert "&lt;a&gt;" in table
    assert 'style="text-align:right"' in table


def test_math_html_wraps_for_mathjax():
    markup = math_html(r"a < b")
    assert markup == '<div class="arithmatex">\\[a &lt; b\\]</div>'


def test_html_table_bold_row():
    table = html_table(["a"], [[1], [2]], bold_rows=[1])
    assert table.count("font-weight:bold") == 1
    assert table.count("<tr") == 3
