"""Parameters merged into communication groups in the order their gradients become final."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["GradientGroup", "build_groups", "split_by_threshold"]


@dataclass(eq=False)
class GradientGroup:
    """A run of consecutive parameters (in backward order) exchanged as one flat message.

    ``flat`` holds the gradients copied in by the hooks, ``residual`` the error feedback (fp32, in gradient units).
    """

    index: int
    names: list[str]
    params: list[nn.Parameter]
    flat: Tensor = field(repr=False)
    residual: Tensor = field(repr=False)
    offsets: list[int] = field(repr=False)
    #: Whether ``residual`` may be non-zero (set by sparse exchanges, cleared when a dense one sends it).
    has_residual: bool = False
    #: Exchanged dense at every step (every member is smaller than the reducer's ``dense_below``).
    always_dense: bool = False

    @property
    def numel(self) -> int:
        return self.flat.numel()

    def slices(self):
        """Yield ``(name, param, flat slice)`` for every member."""
        for name, param, start in zip(self.names, self.params, self.offsets, strict=True):
            yield name, param, self.flat[start : start + param.numel()]

    @functools.cached_property
    def sizes(self) -> list[int]:
        """Elements of each member, in order (read by every quantised exchange, so computed once)."""
        return [param.numel() for param in self.params]

    def residual_slice(self, member: int) -> Tensor:
        start = self.offsets[member]
        return self.residual[start : start + self.params[member].numel()]


NamedParams = list[tuple[str, nn.Parameter]]


def split_by_threshold(
    named_params: Sequence[tuple[str, nn.Parameter]],
    threshold: int,
    dense_below: int = 0,
    dense_threshold: int | None = None,
) -> list[NamedParams]:
    """Walk ``named_params`` (backward order) and close a group once it holds at least ``threshold`` elements.

    ``threshold=0`` gives one group per tensor (the official code's default); its launcher script uses 8192.
    Tensors with fewer than ``dense_below`` elements are merged only with each other, into groups closed at
    ``dense_threshold`` elements (default ``threshold``), so a group is either all small tensors (sent dense) or all
    large ones (sparsified). Small tensors are spread over the whole network, so a large ``dense_threshold`` holds
    the first of them (e.g. the classifier's) until the end of backward, where nothing hides their exchange.
    """
    dense_threshold = threshold if dense_threshold is None else dense_threshold
    if min(threshold, dense_below, dense_threshold) < 0:
        raise ValueError(
            f"need group_threshold, dense_below and dense_group_threshold >= 0 elements, got {threshold}, "
            f"{dense_below}, {dense_threshold}"
        )
    if not named_params:
        raise ValueError("LAGS needs at least one trainable parameter; the module has none with requires_grad=True")
    members: list[NamedParams] = []
    pending: dict[bool, NamedParams] = {False: [], True: []}  # by "small"
    for item in named_params:
        small = item[1].numel() < dense_below
        pending[small].append(item)
        if sum(p.numel() for _, p in pending[small]) >= (dense_threshold if small else threshold):
            members.append(pending[small])
            pending[small] = []
    members += [rest for rest in pending.values() if rest]
    return members


def build_groups(member_lists: Sequence[NamedParams], dense_below: int = 0) -> list[GradientGroup]:
    """One :class:`GradientGroup` (zeroed buffers) per list of ``(name, parameter)``; a group whose members all have
    fewer than ``dense_below`` elements is ``always_dense``."""
    groups = [_make_group(index, list(members)) for index, members in enumerate(member_lists)]
    for group in groups:
        group.always_dense = all(p.numel() < dense_below for p in group.params)
    return groups


def _make_group(index: int, members: list[tuple[str, nn.Parameter]]) -> GradientGroup:
    dtypes = {p.dtype for _, p in members}
    devices = {p.device for _, p in members}
    if len(devices) != 1:
        raise ValueError(f"parameters {[n for n, _ in members]} of one LAGS group live on several devices: {devices}")
    offsets, total = [], 0
    for _, p in members:
        offsets.append(total)
        total += p.numel()
    device = devices.pop()
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    return GradientGroup(
        index=index,
        names=[n for n, _ in members],
        params=[p for _, p in members],
        flat=torch.zeros(total, dtype=dtype, device=device),
        residual=torch.zeros(total, dtype=torch.float32, device=device),
        offsets=offsets,
    )
