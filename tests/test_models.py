"""Tests for hw2lib.models.

They cover parameter counts, argument checks and where BN, ReLU and the addition sit.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from hw2lib.models import NORM_POSITIONS, BasicBlock, TinyTransformerBlock, cifar_resnet18


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("position", NORM_POSITIONS)
def test_parameter_count_width_64(position):
    assert count(cifar_resnet18(num_classes=10, norm_position=position)) == 11_173_962


def test_same_tensors_as_torchvision_except_stem_and_head():
    ours = dict((n, tuple(p.shape)) for n, p in cifar_resnet18().named_parameters())
    theirs = dict(
        (n, tuple(p.shape)) for n, p in torchvision.models.resnet18(weights=None).named_parameters()
    )
    assert ours.keys() == theirs.keys()
    differing = sorted(n for n in ours if ours[n] != theirs[n])
    assert differing == ["conv1.weight", "fc.bias", "fc.weight"]
    assert ours["conv1.weight"] == (64, 3, 3, 3)
    assert ours["fc.weight"] == (10, 512)


@pytest.mark.parametrize("position", NORM_POSITIONS)
def test_forward_shape(position):
    model = cifar_resnet18(num_classes=7, norm_position=position, width=8)
    out = model(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_width_sets_channels():
    model = cifar_resnet18(width=16)
    assert model.conv1.out_channels == 16
    assert model.layer4[0].conv1.out_channels == 128
    assert model.fc.in_features == 128
    assert model.layer1[0].downsample is None
    assert model.layer2[0].downsample is not None


@pytest.mark.parametrize("bad", ["before", "pre", "", "BEFORE_RELU", None])
def test_bad_norm_position_rejected(bad):
    with pytest.raises(ValueError, match="norm_position") as error:
        cifar_resnet18(norm_position=bad)
    assert repr(bad) in str(error.value)
    assert "'before_relu'" in str(error.value)
    assert "'after_relu'" in str(error.value)
    assert "'after_relu_add_relu'" in str(error.value)


@pytest.mark.parametrize("bad", [0, -4, 2.5, True, "64"])
def test_bad_width_rejected(bad):
    with pytest.raises(ValueError, match="width") as error:
        cifar_resnet18(width=bad)
    assert repr(bad) in str(error.value)


@pytest.mark.parametrize("bad", [0, -1, 3.0])
def test_bad_num_classes_rejected(bad):
    with pytest.raises(ValueError, match="num_classes"):
        cifar_resnet18(num_classes=bad)


def test_norm_layer_injected():
    model = cifar_resnet18(width=16, norm_layer=lambda c: nn.GroupNorm(4, c))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # Stem, two per block in eight blocks, and three projection shortcuts.
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) == 20
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def record_inputs_and_outputs(model: nn.Module, names: list[str], x: torch.Tensor) -> dict:
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name in names:

        def hook(module, inputs, output, name=name):
            seen[name + ":in"] = inputs[0].detach().clone()
            seen[name + ":out"] = output.detach().clone()

        hooks.append(modules[name].register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for handle in hooks:
        handle.remove()
    return seen


def test_before_relu_order():
    torch.manual_seed(0)
    model = cifar_resnet18(width=8, norm_position="before_relu").train()
    seen = record_inputs_and_outputs(
        model,
        ["bn1", "layer1.0.bn1", "layer1.0", "layer2.0.downsample.1"],
        torch.randn(4, 3, 32, 32),
    )
    # BatchNorm receives signed convolution outputs, and blocks end with ReLU.
    assert (seen["bn1:in"] < 0).any()
    assert (seen["layer1.0.bn1:in"] < 0).any()
    assert (seen["layer1.0:out"] >= 0).all()
    assert (seen["layer2.0.downsample.1:in"] < 0).any()


def test_after_relu_order():
    torch.manual_seed(0)
    model = cifar_resnet18(width=8, norm_position="after_relu").train()
    seen = record_inputs_and_outputs(
        model,
        ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.0", "layer2.0.downsample.1"],
        torch.randn(4, 3, 32, 32),
    )
    # Every BatchNorm of the stem and the main branch receives ReLU output.
    assert (seen["bn1:in"] >= 0).all()
    assert (seen["layer1.0.bn1:in"] >= 0).all()
    assert (seen["layer1.0.bn2:in"] >= 0).all()
    # No ReLU after the addition, so block outputs are signed.
    assert (seen["layer1.0:out"] < 0).any()
    # The shortcut's BatchNorm still receives the 1x1 convolution's signed output.
    assert (seen["layer2.0.downsample.1:in"] < 0).any()


def test_after_relu_add_relu_order():
    torch.manual_seed(0)
    model = cifar_resnet18(width=8, norm_position="after_relu_add_relu").train()
    seen = record_inputs_and_outputs(
        model, ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer1.0"], torch.randn(4, 3, 32, 32)
    )
    assert (seen["bn1:in"] >= 0).all()
    assert (seen["layer1.0.bn1:in"] >= 0).all()
    assert (seen["layer1.0.bn2:in"] >= 0).all()
    # The ReLU after the addition is kept, so block outputs are non-negative again.
    assert (seen["layer1.0:out"] >= 0).all()
    assert (seen["layer1.0:out"] == 0).any()


def test_after_relu_variants_share_weights_layout():
    # The two after-ReLU orders differ by a parameter-free ReLU only.
    torch.manual_seed(0)
    plain = cifar_resnet18(width=8, norm_position="after_relu").eval()
    with_relu = cifar_resnet18(width=8, norm_position="after_relu_add_relu").eval()
    with_relu.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(plain(x), with_relu(x))
        block_plain, block_relu = plain.layer1[0], with_relu.layer1[0]
        features = torch.randn(2, 8, 8, 8)
        assert torch.equal(torch.relu(block_plain(features)), block_relu(features))


def silence_main_branch(block: BasicBlock) -> None:
    with torch.no_grad():
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()


@pytest.mark.parametrize(
    ("position", "rectified"),
    [("before_relu", True), ("after_relu", False), ("after_relu_add_relu", True)],
)
def test_addition_position(position, rectified):
    # With the main branch silenced, the block returns the addition's result,
    # through the final ReLU when the order has one.
    block = BasicBlock(4, 4, norm_position=position).eval()
    silence_main_branch(block)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x) if rectified else x)


@pytest.mark.parametrize("position", NORM_POSITIONS)
def test_shortcut_bn_feeds_addition(position):
    block = cifar_resnet18(width=8, norm_position=position).layer2[0].eval()
    silence_main_branch(block)
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        shortcut = block.downsample(x)
        expected = shortcut if position == "after_relu" else torch.relu(shortcut)
        assert torch.allclose(block(x), expected)


def test_block_rejects_bad_position():
    with pytest.raises(ValueError, match="'post'"):
        BasicBlock(4, 4, norm_position="post")


def test_transformer_block_forward():
    model = TinyTransformerBlock(vocab_size=50, max_tokens=8, dim=16, heads=2, num_classes=3)
    assert model(torch.randint(0, 50, (5, 8))).shape == (5, 3)
    assert model(torch.randint(0, 50, (5, 4))).shape == (5, 3)


def test_transformer_block_rejects_long_input():
    model = TinyTransformerBlock(max_tokens=8)
    with pytest.raises(ValueError, match="max_tokens=8"):
        model(torch.randint(0, 100, (1, 9)))


def test_transformer_block_rejects_bad_heads():
    with pytest.raises(ValueError, match="heads=5"):
        TinyTransformerBlock(dim=32, heads=5)
