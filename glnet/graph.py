"""The data-flow graph between drawn layers, followed through the capture's own forward pass.

While :func:`glnet.capture.capture` runs the model, :class:`DataFlow` (a ``TorchFunctionMode``) carries, for
each tensor, the set of recorded module calls it was computed from: every torch function passes the union of
its tensor arguments' sets on to its outputs, and in-place ops (``out += identity``, ``x[i] = y``,
``relu_``) union it into the tensor they change. The capture's hooks tag each recorded call's output with
that call and note, as the call begins, which calls its inputs came from. :func:`layer_edges` then folds the
calls that are not drawn (norms, activations, adds, concatenations) into the layers around them, so any model
that runs gets its graph, residual and dense connections included.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["DataFlow", "layer_edges", "layer_owners"]

Sources = frozenset[int]
_NONE: Sources = frozenset()
# Dunder methods that change their first argument; other in-place ops are named with a trailing "_".
_INPLACE_DUNDERS = {
    "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__imod__",
    "__ipow__", "__imatmul__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
}  # fmt: skip
# Residual adds: a skip operand that is itself a sum (a transformer's or an inverted-residual stage's stream)
# passes on only its latest source, so block k links to block k-1, as a skip arc, not to every block before.
_RESIDUAL = {
    "add", "__add__", "__radd__", "__iadd__", "add_", "sub", "__sub__", "__rsub__", "__isub__", "sub_",
}  # fmt: skip


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _mutates_first(func: Callable[..., Any]) -> bool:
    name = getattr(func, "__name__", "")
    return name in _INPLACE_DUNDERS or (name.endswith("_") and not name.endswith("__"))


def _shape_only(func: Callable[..., Any]) -> bool:
    """Factories that take only a tensor's shape (``zeros_like``, ``x.new_zeros``): no data flows."""
    name = getattr(func, "__name__", "")
    return name.endswith("_like") or name in ("new_zeros", "new_ones", "new_empty", "new_full")


class DataFlow(TorchFunctionMode):
    """Tags tensors with the recorded calls they came from, through every torch function of a forward.

    Tags are keyed by ``id`` and checked against a weak reference, so a freed tensor's reused id never
    inherits its tags, and nothing is kept alive for the graph's sake.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tags: dict[int, tuple[weakref.ref[torch.Tensor], Sources]] = {}
        self.ops = 0  # torch functions seen so far: a module call that ran none is a pass-through

    def _get(self, t: torch.Tensor) -> Sources:
        entry = self._tags.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else _NONE

    def _put(self, t: torch.Tensor, sources: Sources) -> None:
        try:
            self._tags[id(t)] = (weakref.ref(t), sources)
        except TypeError:  # a tensor type that cannot be weakly referenced: left untagged
            pass

    def sources(self, *objs: Any) -> Sources:
        """The recorded calls every tensor in ``objs`` (nested tuples, lists, dicts) was computed from."""
        out: set[int] = set()
        for obj in objs:
            for t in _tensors(obj):
                out.update(self._get(t))
        return frozenset(out)

    def tag(self, obj: Any, call: int) -> None:
        """Mark every tensor in ``obj`` as the output of recorded call ``call``."""
        mark = frozenset((call,))
        for t in _tensors(obj):
            self._put(t, mark)

    def _union_into(self, t: torch.Tensor, sources: Sources) -> None:
        for target in (t, t._base):
            if isinstance(target, torch.Tensor):
                self._put(target, self._get(target) | sources)

    def _residual(self, func: Callable[..., Any], args: Sequence[Any]) -> Sources:
        """For an add of two tagged tensors, each operand's latest source (calls are numbered in order);
        empty for anything else."""
        if getattr(func, "__name__", "") not in _RESIDUAL or len(args) < 2:
            return _NONE
        a, b = args[0], args[1]
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return _NONE
        sa, sb = self._get(a), self._get(b)
        return frozenset((max(sa), max(sb))) if sa and sb else _NONE

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.ops += 1
        residual = self._residual(func, args)
        sources = residual or (_NONE if _shape_only(func) else self.sources(args, kwargs))
        if sources:
            for t in _tensors(out):
                self._put(t, sources)
            if args and isinstance(args[0], torch.Tensor) and _mutates_first(func):
                if residual:
                    self._put(args[0], residual)
                self._union_into(args[0], sources)
            for t in _tensors(kwargs.get("out")):
                self._union_into(t, sources)
        return out


def layer_owners(drawn: Sequence[tuple[int, int]], input_from: Sequence[int | None]) -> dict[int, int]:
    """Call index -> drawn layer index: each layer's own call, the activation shown for it, and the
    norm calls between them (``drawn[L]`` is layer L's (layer call, shown call))."""
    owner: dict[int, int] = {}
    for layer, (first, shown) in enumerate(drawn):
        k: int | None = shown
        while k is not None and k > first:
            owner.setdefault(k, layer)
            k = input_from[k]
        owner.setdefault(first, layer)
    return owner


def layer_edges(
    sources: Sequence[Sources], input_from: Sequence[int | None], drawn: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Sorted, unique (producer layer, consumer layer) pairs, from each call's input sources (call indices):
    calls that no layer owns pass on the layers their inputs came from."""
    owner = layer_owners(drawn, input_from)
    reach: list[Sources] = []
    edges: set[tuple[int, int]] = set()
    for k, src in enumerate(sources):
        layers: set[int] = set()
        for s in src:
            if s < k:
                layers.update(reach[s])
        mine = owner.get(k)
        if mine is None:
            reach.append(frozenset(layers))
        else:
            edges.update((a, mine) for a in layers if a != mine)
            reach.append(frozenset((mine,)))
    return sorted(edges)
