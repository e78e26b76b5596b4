"""Tests for hw2lib.parameters on hand-built modules and on real torchvision models."""

from __future__ import annotations

import functools
import logging
import math

import pytest
import torch
import torchvision
from torch import nn

from hw2lib.parameters import (
    compare_exclusion_rules,
    excluded_by_bn_substring,
    excluded_by_shape,
    group_totals,
    optimizer_param_groups,
    parameter_inventory,
    split_parameters,
    stage_totals,
)


@functools.cache
def build(name: str) -> nn.Module:
    """Build a torchvision model once per test session, with random weights."""
    if name == "vit_small":
        # vit_b_16 has 86M parameters; this configuration has the same module types.
        return torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128
        )
    if name == "googlenet":
        return torchvision.models.googlenet(weights=None, init_weights=True)
    return getattr(torchvision.models, name)(weights=None)


def names(pairs: list[tuple[str, nn.Parameter]]) -> list[str]:
    return [name for name, _ in pairs]


# ---------------------------------------------------------------------------
# resnet18 numbers
# ---------------------------------------------------------------------------


def test_resnet18_inventory_totals():
    rows = parameter_inventory(build("resnet18"))
    assert len(rows) == 62
    assert sum(row.numel for row in rows) == 11_689_512


def test_resnet18_split_counts():
    split = split_parameters(build("resnet18"))
    assert split.numel("norm") == 9_600
    assert split.numel("bias") == 1_000
    assert split.numel("other") == 11_678_912
    assert names(split.bias) == ["fc.bias"]
    assert len(split.norm) == 40


def test_resnet18_inventory_rows_and_stages():
    rows = parameter_inventory(build("resnet18"))
    assert rows[0].name == "conv1.weight"
    assert rows[0].shape == (64, 3, 7, 7)
    assert rows[0].numel == 9_408
    assert rows[0].group == "other"
    assert rows[-1].name == "fc.bias"
    assert rows[-1].group == "bias"

    stages = stage_totals(rows)
    assert [s.stage for s in stages] == [
        "conv1",
        "bn1",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "fc",
    ]
    assert sum(s.numel for s in stages) == 11_689_512
    assert sum(s.tensors for s in stages) == 62
    assert max(stages, key=lambda s: s.numel).stage == "layer4"
    assert group_totals(rows) == {"norm": 9_600, "bias": 1_000, "other": 11_678_912}


def test_resnet18_name_rule_finds_7808():
    model = build("resnet18")
    excluded = excluded_by_bn_substring(model)
    numel = dict((n, p.numel()) for n, p in model.named_parameters())
    assert sum(numel[n] for n in excluded) == 7_808
    assert "layer2.0.downsample.1.weight" not in excluded
    assert "fc.bias" not in excluded


def test_resnet18_rule_comparison():
    rows = {row.rule: row for row in compare_exclusion_rules(build("resnet18"))}
    assert rows["module_type"].excluded_numel == 10_600
    assert rows["shape"].excluded_numel == 10_600
    assert rows["shape"].missed_tensors == 0
    assert rows["shape"].extra_tensors == 0
    assert rows["name"].norm_numel_excluded == 7_808
    assert rows["name"].missed_numel == 9_600 - 7_808 + 1_000
    assert rows["name"].extra_tensors == 0


def test_resnet18_optimizer_groups(caplog):
    model = build("resnet18")
    with caplog.at_level(logging.INFO, logger="hw2lib.parameters"):
        groups = optimizer_param_groups(model, 5e-4)
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert sum(p.numel() for p in groups[0]["params"]) == 11_678_912
    assert sum(p.numel() for p in groups[1]["params"]) == 10_600
    messages = [record.getMessage() for record in caplog.records]
    assert "decayed: 21 tensors, 11,678,912 elements" in messages
    assert "not decayed: 41 tensors, 10,600 elements" in messages


# ---------------------------------------------------------------------------
# Hand-built modules
# ---------------------------------------------------------------------------


class TiedModel(nn.Module):
    """An embedding whose weight the output layer reuses, plus one module used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.shared = nn.Linear(4, 4)
        self.blocks = nn.Sequential(self.shared, nn.ReLU(), self.shared)
        self.head = nn.Linear(4, 10)
        self.head.weight = self.embed.weight


def test_split_tied_parameter_once():
    model = TiedModel()
    split = split_parameters(model)
    all_names = names(split.norm) + names(split.bias) + names(split.other)
    unique = {id(p) for p in model.parameters()}
    assert len(all_names) == len(unique) == 4
    assert names(split.other) == ["embed.weight", "shared.weight"]
    assert names(split.bias) == ["shared.bias", "head.bias"]
    assert len(parameter_inventory(model)) == 4


def test_groups_tied_parameter_once():
    model = TiedModel()
    groups = optimizer_param_groups(model, 0.1)
    held = [id(p) for g in groups for p in g["params"]]
    assert len(held) == len(set(held))
    assert set(held) == {id(p) for p in model.parameters()}
    torch.optim.SGD(groups, lr=0.1)


def test_frozen_parameter_split_but_not_grouped():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    model[1].bias.requires_grad_(False)
    split = split_parameters(model)
    assert "0.weight" in names(split.other)
    assert "1.bias" in names(split.norm)
    rows = {row.name: row for row in parameter_inventory(model)}
    assert rows["0.weight"].trainable is False

    groups = optimizer_param_groups(model, 0.01)
    held = {id(p) for g in groups for p in g["params"]}
    assert id(model[0].weight) not in held
    assert id(model[1].bias) not in held
    assert held == {id(p) for p in model.parameters() if p.requires_grad}


def test_empty_model():
    split = split_parameters(nn.Module())
    assert split.norm == []
    assert split.bias == []
    assert split.other == []
    assert parameter_inventory(nn.ReLU()) == []
    assert optimizer_param_groups(nn.Sequential(), 0.1) == []
    assert stage_totals([]) == []


def test_all_frozen_gives_no_groups():
    model = nn.Linear(3, 3).requires_grad_(False)
    assert optimizer_param_groups(model, 0.1) == []


def test_normalization_layers_by_type():
    layers = {
        "ln": nn.LayerNorm(6),
        "gn": nn.GroupNorm(2, 6),
        "in2": nn.InstanceNorm2d(6, affine=True),
        "bn3": nn.BatchNorm3d(6),
        "bn1": nn.BatchNorm1d(6),
        "sync": nn.SyncBatchNorm(6),
        "conv": nn.Conv2d(6, 6, 3),
        "lin": nn.Linear(6, 6, bias=False),
    }
    if hasattr(nn, "RMSNorm"):
        layers["rms"] = nn.RMSNorm(6)
    model = nn.ModuleDict(layers)
    split = split_parameters(model)

    expected_norm = [
        f"{k}.{p}" for k in ("ln", "gn", "in2", "bn3", "bn1", "sync") for p in ("weight", "bias")
    ]
    if "rms" in layers:
        expected_norm.append("rms.weight")
    assert names(split.norm) == expected_norm
    assert names(split.bias) == ["conv.bias"]
    assert names(split.other) == ["conv.weight", "lin.weight"]


def test_norm_without_affine_has_no_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False), nn.InstanceNorm2d(4))
    split = split_parameters(model)
    assert split.norm == []
    assert names(split.bias) == ["0.bias"]


def test_bias_names_in_attention_and_rnn():
    model = nn.ModuleDict({"attn": nn.MultiheadAttention(8, 2), "rnn": nn.LSTM(4, 4)})
    split = split_parameters(model)
    assert set(names(split.bias)) == {
        "attn.in_proj_bias",
        "attn.out_proj.bias",
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
    }
    assert "attn.in_proj_weight" in names(split.other)


def test_group_lookup_rejects_unknown_name():
    with pytest.raises(ValueError, match="'weights'"):
        split_parameters(nn.Linear(2, 2)).group("weights")


# ---------------------------------------------------------------------------
# optimizer_param_groups arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1e-4, -1, math.nan, math.inf, -math.inf])
def test_weight_decay_rejected(bad):
    with pytest.raises(ValueError, match="weight_decay") as error:
        optimizer_param_groups(nn.Linear(2, 2), bad)
    assert repr(float(bad)) in str(error.value)


def test_weight_decay_zero_allowed():
    groups = optimizer_param_groups(nn.Linear(2, 2), 0)
    assert [g["weight_decay"] for g in groups] == [0.0, 0.0]


def test_decay_flags_move_groups():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    default = optimizer_param_groups(model, 0.1)
    assert [len(g["params"]) for g in default] == [1, 3]

    with_bias = optimizer_param_groups(model, 0.1, decay_bias=True)
    assert [len(g["params"]) for g in with_bias] == [2, 2]

    everything = optimizer_param_groups(model, 0.1, decay_norm=True, decay_bias=True)
    assert len(everything) == 1
    assert len(everything[0]["params"]) == 4
    assert everything[0]["weight_decay"] == 0.1


def test_no_decay_names():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2))
    groups = optimizer_param_groups(model, 0.1, no_decay_names=["0.weight"])
    assert [id(p) for p in groups[0]["params"]] == [id(model[1].weight)]
    assert {id(p) for p in groups[1]["params"]} == {id(model[0].weight), id(model[1].bias)}


def test_no_decay_names_unknown_rejected():
    with pytest.raises(ValueError, match=r"embed\.weight"):
        optimizer_param_groups(nn.Linear(2, 2), 0.1, no_decay_names=["embed.weight"])


def test_groups_drive_adamw_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, 0.5), lr=0.1)
    bias_before = model[0].bias.detach().clone()
    weight_before = model[0].weight.detach().clone()
    # Zero gradients: only decoupled decay can move a parameter.
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    assert torch.equal(model[0].bias, bias_before)
    assert torch.allclose(model[0].weight, weight_before * (1 - 0.1 * 0.5))


# ---------------------------------------------------------------------------
# Torchvision architectures
# ---------------------------------------------------------------------------

ARCHITECTURES = [
    "resnet18",
    "resnet50",
    "mobilenet_v3_small",
    "densenet121",
    "efficientnet_b0",
    "vit_small",
    "convnext_tiny",
    "regnet_y_400mf",
    "shufflenet_v2_x0_5",
    "squeezenet1_0",
    "swin_t",
    "mnasnet0_5",
    "googlenet",
    "maxvit_t",
]

# Concrete classes, listed one by one, so that this count does not share the
# library's use of the private _NormBase base class.
CONCRETE_NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def count_by_module_type(model: nn.Module) -> tuple[int, int, int]:
    """Return (norm, bias, all) element counts from ``modules()`` and each ``_parameters`` dict."""
    seen: set[int] = set()
    norm = bias = total = 0
    for module in model.modules():
        for attribute, parameter in module._parameters.items():
            if parameter is None or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            total += parameter.numel()
            if type(module) in CONCRETE_NORMS or any(
                issubclass(type(module), cls) for cls in CONCRETE_NORMS
            ):
                norm += parameter.numel()
            elif attribute == "bias" or attribute.endswith("_bias"):
                bias += parameter.numel()
    return norm, bias, total


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_torchvision_split_matches_count(name):
    model = build(name)
    split = split_parameters(model)
    norm, bias, total = count_by_module_type(model)
    assert split.numel("norm") == norm
    assert split.numel("bias") == bias
    assert sum(split.counts().values()) == total == sum(p.numel() for p in model.parameters())
    assert bias > 0
    if name != "squeezenet1_0":  # SqueezeNet has no normalization layers
        assert norm > 0


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_torchvision_groups_hold_each_once(name):
    model = build(name)
    groups = optimizer_param_groups(model, 1e-4)
    held = [id(p) for g in groups for p in g["params"]]
    assert len(held) == len(set(held))
    assert set(held) == {id(p) for p in model.parameters() if p.requires_grad}

    norm, bias, total = count_by_module_type(model)
    decayed = sum(p.numel() for p in groups[0]["params"])
    not_decayed = sum(p.numel() for p in groups[1]["params"])
    assert decayed == total - norm - bias
    assert not_decayed == norm + bias
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_torchvision_shape_rule_covers_norms(name):
    model = build(name)
    split = split_parameters(model)
    shape_excluded = excluded_by_shape(model)
    # Every normalization parameter is a vector, so the shape rule excludes it too.
    assert set(names(split.norm)) <= shape_excluded
