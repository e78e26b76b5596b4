"""Parameter bookkeeping for weight decay: split, inventory, optimizer groups, rule comparison.

A model's parameters fall into three groups:

* ``norm``: the affine parameters (scale and shift) of normalization layers,
  found by module type: every subclass of ``nn.modules.batchnorm._NormBase``
  (BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm1d/2d/3d and their lazy
  forms), ``nn.GroupNorm``, ``nn.LayerNorm`` and ``nn.RMSNorm`` (PyTorch 2.4+).
  torchvision's ``LayerNorm2d`` subclasses ``nn.LayerNorm`` and counts too.
* ``bias``: additive biases of every other module, recognised by the
  parameter's own name (the part after the last dot): ``bias``, a name ending
  in ``_bias`` (``nn.MultiheadAttention.in_proj_bias``) or starting with
  ``bias_ih``/``bias_hh`` (recurrent layers).
* ``other``: everything else. These are the weights that weight decay is
  meant for, plus tensors such as embeddings, positional embeddings, class
  tokens and layer-scale vectors, which this rule decays unless the caller
  names them in ``no_decay_names``.

Frozen parameters (``requires_grad=False``) still appear in the split and in
the inventory, because both describe the model. :func:`optimizer_param_groups`
leaves them out, because an optimizer should hold only what it updates.

Two other exclusion rules are common in training scripts. timm's shape rule
excludes every tensor with at most one dimension and every name ending in
``.bias``. The substring rule ``"bn" in name`` depends on how the model's
author named the layers. :func:`compare_exclusion_rules` measures how both
differ from the module-type rule on a given model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from torch import nn

logger = logging.getLogger(__name__)

NamedParameter = tuple[str, nn.Parameter]

NORM = "norm"
BIAS = "bias"
OTHER = "other"
GROUPS: tuple[str, ...] = (NORM, BIAS, OTHER)


def _norm_module_types() -> tuple[type[nn.Module], ...]:
    types: list[type[nn.Module]] = [
        nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*, lazy forms
        nn.GroupNorm,
        nn.LayerNorm,
    ]
    rms_norm = getattr(nn, "RMSNorm", None)  # added in PyTorch 2.4
    if rms_norm is not None:
        types.append(rms_norm)
    return tuple(types)


NORM_MODULE_TYPES: tuple[type[nn.Module], ...] = _norm_module_types()


def is_norm_module(module: nn.Module) -> bool:
    """Return whether ``module`` is a normalization layer whose parameters count as ``norm``."""
    return isinstance(module, NORM_MODULE_TYPES)


def is_bias_name(local_name: str) -> bool:
    """Return whether a parameter's own name (no dots) marks an additive bias."""
    return (
        local_name == "bias"
        or local_name.endswith("_bias")
        or local_name.startswith(("bias_ih", "bias_hh"))
    )


@dataclass
class ParameterSplit:
    """The parameters of one model in three disjoint lists of ``(qualified_name, parameter)``.

    A parameter that several modules share appears once, under the first name
    that ``model.named_modules()`` reaches it by.
    """

    norm: list[NamedParameter] = field(default_factory=list)
    bias: list[NamedParameter] = field(default_factory=list)
    other: list[NamedParameter] = field(default_factory=list)

    def group(self, group: str) -> list[NamedParameter]:
        """Return the list for ``group`` (``"norm"``, ``"bias"`` or ``"other"``)."""
        if group not in GROUPS:
            raise ValueError(f"unknown parameter group {group!r}: use one of {GROUPS}")
        return getattr(self, group)

    def group_of(self) -> dict[str, str]:
        """Return a map from qualified parameter name to its group."""
        return {name: group for group in GROUPS for name, _ in self.group(group)}

    def numel(self, group: str) -> int:
        """Return the number of scalar elements in ``group``."""
        return sum(p.numel() for _, p in self.group(group))

    def counts(self) -> dict[str, int]:
        """Return the number of elements per group, e.g. ``{"norm": 9600, ...}``."""
        return {group: self.numel(group) for group in GROUPS}


def split_parameters(model: nn.Module) -> ParameterSplit:
    """Split ``model``'s parameters into normalization, bias and other parameters.

    Works for any ``nn.Module``: the group is decided by the type of the module
    that owns the parameter and by the parameter's own name (see the module
    docstring). Every parameter lands in exactly one list, including frozen
    ones. Names are the qualified names of ``model.named_parameters()``.
    """
    split = ParameterSplit()
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        norm_module = is_norm_module(module)
        for local_name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            entry = (prefix + local_name, parameter)
            if norm_module:
                split.norm.append(entry)
            elif is_bias_name(local_name):
                split.bias.append(entry)
            else:
                split.other.append(entry)
    return split


# ---------------------------------------------------------------------------
# Inventory
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryRow:
    """One named parameter tensor: qualified name, shape, element count and group."""

    name: str
    shape: tuple[int, ...]
    numel: int
    group: str
    trainable: bool

    @property
    def stage(self) -> str:
        """The first component of the name (``conv1``, ``layer3``, ``fc`` in a ResNet)."""
        return self.name.split(".", 1)[0]


@dataclass(frozen=True)
class StageTotal:
    """Subtotal of the inventory rows that share one stage."""

    stage: str
    tensors: int
    numel: int


def parameter_inventory(model: nn.Module) -> list[InventoryRow]:
    """Return one row per named parameter of ``model``, in ``named_parameters()`` order.

    A shared parameter gets one row, as in ``named_parameters()``.
    """
    split = split_parameters(model)
    group_of = {id(p): group for group in GROUPS for _, p in split.group(group)}
    return [
        InventoryRow(
            name=name,
            shape=tuple(parameter.shape),
            numel=parameter.numel(),
            group=group_of[id(parameter)],
            trainable=parameter.requires_grad,
        )
        for name, parameter in model.named_parameters()
    ]


def stage_totals(rows: Iterable[InventoryRow]) -> list[StageTotal]:
    """Return the tensor count and element count per stage, in order of first appearance."""
    tensors: dict[str, int] = {}
    elements: dict[str, int] = {}
    for row in rows:
        tensors[row.stage] = tensors.get(row.stage, 0) + 1
        elements[row.stage] = elements.get(row.stage, 0) + row.numel
    return [StageTotal(stage, tensors[stage], elements[stage]) for stage in tensors]


def group_totals(rows: Iterable[InventoryRow]) -> dict[str, int]:
    """Return the element count per group (``norm``, ``bias``, ``other``)."""
    totals = dict.fromkeys(GROUPS, 0)
    for row in rows:
        totals[row.group] += row.numel
    return totals


# ---------------------------------------------------------------------------
# Optimizer groups
# ---------------------------------------------------------------------------


def optimizer_param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    decay_norm: bool = False,
    decay_bias: bool = False,
    no_decay_names: Iterable[str] = (),
) -> list[dict[str, object]]:
    """Build parameter groups for a ``torch.optim`` optimizer with selective weight decay.

    Returns up to two dicts: ``{"params": [...], "weight_decay": weight_decay}``
    for the decayed tensors, then ``{"params": [...], "weight_decay": 0.0}`` for
    normalization parameters (unless ``decay_norm``), biases (unless
    ``decay_bias``) and the qualified names listed in ``no_decay_names``. A group
    with no tensors is left out, so a model without biases or norms gets one
    group. Frozen parameters are left out. Logs, at INFO, the number of tensors
    and elements in each group.

    Raises ``ValueError`` when ``weight_decay`` is negative or not finite, and
    when a name in ``no_decay_names`` is not a parameter of ``model``.
    """
    weight_decay = float(weight_decay)
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(
            f"weight_decay must be a finite number >= 0, got {weight_decay!r}: "
            "pass e.g. 5e-4, or 0.0 to turn weight decay off"
        )
    split = split_parameters(model)
    excluded_names = set(no_decay_names)
    known = set(split.group_of())
    unknown = sorted(excluded_names - known)
    if unknown:
        raise ValueError(
            f"no_decay_names contains names that are not parameters of the model: {unknown}; "
            "use qualified names from model.named_parameters()"
        )

    excluded_groups = set()
    if not decay_norm:
        excluded_groups.add(NORM)
    if not decay_bias:
        excluded_groups.add(BIAS)

    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for group in GROUPS:
        for name, parameter in split.group(group):
            if not parameter.requires_grad:
                continue
            if group in excluded_groups or name in excluded_names:
                no_decay.append(parameter)
            else:
                decay.append(parameter)

    for label, params in (("decayed", decay), ("not decayed", no_decay)):
        logger.info(
            "%s: %d tensors, %s elements",
            label,
            len(params),
            f"{sum(p.numel() for p in params):,}",
        )
    groups: list[dict[str, object]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


# ---------------------------------------------------------------------------
# Comparing exclusion rules
# ---------------------------------------------------------------------------


def excluded_by_module_type(model: nn.Module) -> set[str]:
    """Return the names this library excludes from decay: normalization parameters and biases."""
    split = split_parameters(model)
    return {name for name, _ in split.norm + split.bias}


def excluded_by_shape(model: nn.Module) -> set[str]:
    """Return the names the shape rule excludes: ``ndim <= 1`` or a name ending in ``.bias``."""
    return {
        name
        for name, parameter in model.named_parameters()
        if parameter.ndim <= 1 or name.endswith(".bias")
    }


def excluded_by_bn_substring(model: nn.Module) -> set[str]:
    """Return the names the substring rule excludes: every name that contains ``"bn"``."""
    return {name for name, _ in model.named_parameters() if "bn" in name}


@dataclass(frozen=True)
class ExclusionRule:
    """A rule that picks the parameters to leave undecayed.

    It has a short key, a label and the function that returns the excluded names.
    """

    key: str
    label: str
    excluded_names: Callable[[nn.Module], set[str]]


EXCLUSION_RULES: tuple[ExclusionRule, ...] = (
    ExclusionRule("module_type", "module type (hw2lib)", excluded_by_module_type),
    ExclusionRule("shape", "shape: ndim <= 1 or .bias (timm)", excluded_by_shape),
    ExclusionRule("name", "name: 'bn' in name", excluded_by_bn_substring),
)


@dataclass(frozen=True)
class RuleComparisonRow:
    """Counts of the tensors one exclusion rule leaves undecayed, against the module-type split.

    ``missed_*`` counts normalization parameters and biases (by module type)
    that the rule decays; ``extra_*`` counts parameters outside those groups
    that the rule excludes from decay. The sample lists hold up to five names each.
    ``rule`` is the key of an :class:`ExclusionRule` (``"module_type"``,
    ``"shape"``, ``"name"``); ``label`` is its readable name.
    """

    rule: str
    label: str
    excluded_tensors: int
    excluded_numel: int
    norm_numel_excluded: int
    missed_tensors: int
    missed_numel: int
    extra_tensors: int
    extra_numel: int
    missed_sample: tuple[str, ...]
    extra_sample: tuple[str, ...]


def compare_exclusion_rules(model: nn.Module) -> list[RuleComparisonRow]:
    """Apply each rule in ``EXCLUSION_RULES`` to ``model`` and return one row per rule."""
    numel = {name: p.numel() for name, p in model.named_parameters()}
    split = split_parameters(model)
    norm_names = {name for name, _ in split.norm}
    reference = excluded_by_module_type(model)

    rows = []
    for rule in EXCLUSION_RULES:
        excluded = rule.excluded_names(model)
        missed = sorted(reference - excluded)
        extra = sorted(excluded - reference)
        rows.append(
            RuleComparisonRow(
                rule=rule.key,
                label=rule.label,
                excluded_tensors=len(excluded),
                excluded_numel=sum(numel[name] for name in excluded),
                norm_numel_excluded=sum(numel[name] for name in excluded & norm_names),
                missed_tensors=len(missed),
                missed_numel=sum(numel[name] for name in missed),
                extra_tensors=len(extra),
                extra_numel=sum(numel[name] for name in extra),
                missed_sample=tuple(missed[:5]),
                extra_sample=tuple(extra[:5]),
            )
        )
    return rows
