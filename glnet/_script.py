"""Record every leaf-module call of a TorchScript model, which forward hooks cannot do.

``register_forward_hook`` is not supported on ScriptModules, so this works on the TorchScript graph instead.
A copy of the model's ``forward`` graph has every call into a non-leaf submodule inlined (recursively), which
leaves a flat graph whose only ``prim::CallMethod[name="forward"]`` nodes are leaf-module calls. Right after
each of those, the graph snapshots (detach + clone) the call's output and appends it, with the call site's
number, to two lists that the graph returns next to the model's output. One run of that graph gives the
model's output and every leaf call in execution order, inside ``if`` branches and real loops too, and the
clone happens at call time, so in-place ops that run later (``ReLU(inplace)``, ``out += identity``) cannot
change what was recorded. Each model's instrumented graph is built once and cached.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias

import torch

from .errors import CaptureError

__all__ = ["ScriptCall", "script_leaf_calls"]


@dataclass
class ScriptCall:
    """One call of a leaf submodule of a TorchScript model, as :func:`script_leaf_calls` recorded it."""

    name: str  # qualified name as in named_modules(); the 2nd, 3rd... call of one submodule gets ":1", ":2"
    type_name: str  # the original Python class name, e.g. "Conv2d"
    output: object  # a detached clone of the output Tensor, a tuple/list of them, or the non-tensor value
    input_from: int | None  # index of the earlier call whose output is this call's first input, else None


# Ops whose output holds the same values as their first input, so a call reading them still reads the
# output of the call that produced that input.
_VIEW_OPS = frozenset(
    {
        "aten::view",
        "aten::view_as",
        "aten::reshape",
        "aten::reshape_as",
        "aten::flatten",
        "aten::unflatten",
        "aten::squeeze",
        "aten::unsqueeze",
        "aten::contiguous",
        "aten::detach",
        "aten::permute",
        "aten::transpose",
        "aten::t",
    }
)
# Taking one element of a call's tuple or list output.
_UNPACK_OPS = frozenset({"prim::TupleUnpack", "prim::TupleIndex", "prim::ListUnpack", "aten::__getitem__"})
# A traced model calls a module's second, third... traced forward "forward1", "forward2"...
_FORWARD = re.compile(r"forward\d*")


@dataclass(frozen=True)
class _Branch:
    """A value chosen at run time by ``if`` or loop number ``index``: its source is ``options[option]``."""

    index: int
    options: tuple[_Source, ...]


_Source: TypeAlias = "int | _Branch | None"  # a site index, a run-time choice, or no call


@dataclass(frozen=True)
class _Site:
    """A leaf-call node of the instrumented graph; it may run several times (in a loop) or never."""

    name: str
    type_name: str
    source: _Source  # the site whose output is this site's first input
    copied: bool  # whether the graph already snapshots the whole output (else it is copied after the run)


@dataclass(frozen=True)
class _Plan:
    function: torch._C.ScriptFunction | None  # None when the model itself has no children
    sites: tuple[_Site, ...]
    model_name: str


_plans: weakref.WeakKeyDictionary[torch.jit.ScriptModule, _Plan] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


def script_leaf_calls(module: torch.jit.ScriptModule, *args: object) -> tuple[object, list[ScriptCall]]:
    """Run ``module(*args)`` once and return (the model's output, every leaf-module call in execution order).

    A model with no children at all is reported as one call named ``""`` (its name in ``named_modules()``).
    Raises :class:`TypeError` for a module that is not a ScriptModule and :class:`CaptureError` when the graph
    uses a construct this cannot instrument; errors of the model's own forward pass propagate unchanged.
    """
    if not isinstance(module, torch.jit.ScriptModule):
        raise TypeError(f"script_leaf_calls needs a torch.jit.ScriptModule, got {type(module).__name__}")
    with _plans_lock:
        plan = _plans.get(module)
        if plan is None:
            plan = _plans[module] = _build_plan(module)
    # No executor optimisation: every op then runs as its own ATen call, exactly as in eager mode (fusers
    # could change the last bits). The flag is thread-local.
    with torch.jit.optimized_execution(False):
        if plan.function is None:
            output = module(*args)
            return output, [ScriptCall("", plan.model_name, _snapshot_py(output), None)]
        output, events, values = plan.function(module._c, *args)

    calls: list[ScriptCall] = []
    counts: dict[str, int] = {}
    latest: dict[int, int] = {}  # site -> index in `calls` of its latest run
    branch: dict[int, int] = {}  # recorded ``if`` or loop -> its latest option
    values_iter = iter(values)
    for event in events:
        if event < 0:  # a choice was made: event == -1 - (2 * choice index + option), see _instrument
            branch[(-1 - event) // 2] = (-1 - event) % 2
            continue
        site = plan.sites[event]
        k = counts.get(site.name, 0)
        counts[site.name] = k + 1
        name = site.name if k == 0 else f"{site.name}:{k}"
        source = site.source
        while isinstance(source, _Branch):
            source = source.options[branch[source.index]] if source.index in branch else None
        value = next(values_iter)
        output_copy = value if site.copied else _snapshot_py(value)
        calls.append(ScriptCall(name, site.type_name, output_copy, latest.get(source)))
        latest[event] = len(calls) - 1
    return output, calls


# --------------------------------------------------------------------------------------------- building


def _build_plan(module: torch.jit.ScriptModule) -> _Plan:
    """Instrument a copy of ``module``'s forward graph and compile it into a callable."""
    model_name = getattr(module, "original_name", type(module).__name__)
    try:
        graph = module._c._get_method("forward").graph.copy()
    except RuntimeError as e:
        raise CaptureError(f"TorchScript model {model_name} has no forward method") from e
    if len(list(graph.outputs())) != 1:
        raise CaptureError(f"TorchScript model {model_name}: its forward graph has several outputs")
    if not _has_children(module):
        return _Plan(None, (), model_name)

    names = {id(m): n for n, m in module.named_modules()}
    graph_self = next(graph.inputs())
    sites: list[tuple[torch._C.Node, str, str]] = []
    try:
        _inline_non_leaf_calls(graph, graph_self, module, model_name)
    except RuntimeError as e:
        raise CaptureError(
            f"TorchScript model {model_name}: cannot inline a submodule ({_first_line(e)})"
        ) from e
    for node in _walk(graph.block()):
        if node.kind() != "prim::CallMethod":
            continue
        path = _module_path(node.inputsAt(0), graph_self)
        sub = _submodule(module, path) if path is not None else None
        if sub is None or not _FORWARD.fullmatch(node.s("name")):
            continue  # a TorchScript class's method, or a leaf's helper method: no hook would fire
        label = names.get(id(sub), ".".join(path))
        sites.append((node, label, getattr(sub, "original_name", type(sub).__name__)))

    tracer = _Tracer({node.output().unique(): i for i, (node, _, _) in enumerate(sites)})
    infos = tuple(
        _Site(label, type_name, tracer.source(node), _copied_in_graph(node.output().type()))
        for node, label, type_name in sites
    )
    _instrument(graph, [node for node, _, _ in sites], tracer.choices)
    try:
        graph.lint()
        function = torch._C._create_function_from_graph("__glnet_capture__.forward", graph)
    except RuntimeError as e:
        raise CaptureError(
            f"TorchScript model {model_name}: cannot instrument its graph ({_first_line(e)})"
        ) from e
    return _Plan(function, infos, model_name)


def _inline_non_leaf_calls(
    graph: torch._C.Graph, graph_self: torch._C.Value, module: torch.jit.ScriptModule, model_name: str
) -> None:
    """Replace every method call on a module that has children (the model included) by the method's body.

    What is left are calls on leaf modules and on TorchScript class objects. Rounds repeat because an inlined
    body brings the calls of the next level down.
    """
    while True:
        todo = []
        for node in _walk(graph.block()):
            if node.kind() != "prim::CallMethod":
                continue
            target = node.inputsAt(0)
            path = _module_path(target, graph_self)
            if path is None:
                if _is_module_type(target.type(), module):
                    producer = target.node().kind()
                    raise CaptureError(
                        f"TorchScript model {model_name}: a submodule chosen at run time ({producer}) is"
                        f" called with {node.s('name')}(); only calls on model attributes can be recorded"
                    )
                continue
            sub = _submodule(module, path)
            if sub is None:
                continue  # an attribute holding a TorchScript class object
            if _has_children(sub):
                if target.type().kind() == "InterfaceType":
                    raise CaptureError(
                        f"TorchScript model {model_name}: submodule '{'.'.join(path)}' is called through a"
                        " module interface, whose body cannot be inlined"
                    )
                todo.append((node, sub))
        if not todo:
            return
        for node, sub in todo:
            callee = sub._c._get_method(node.s("name")).graph
            with graph.insert_point_guard(node):
                outputs = graph.insertGraph(callee, list(node.inputs()))
            for old, new in zip(node.outputs(), outputs, strict=True):
                old.replaceAllUsesWith(new)
            node.destroy()


def _instrument(graph: torch._C.Graph, sites: list[torch._C.Node], choices: list[torch._C.Node]) -> None:
    """Make ``graph`` return ``(output, events, snapshots)``.

    After each site's call the site's number goes to ``events`` and a snapshot of its output to ``snapshots``.
    Choice ``i`` records ``-1 - (2 * i + option)``: an ``if`` at the end of branch ``option``; a loop 0 just
    before it starts and 1 at the end of each pass, so the latest says whether a pass has completed.
    """
    id_list_type = torch._C.ListType(torch._C.IntType.get())
    value_list_type = torch._C.ListType(torch._C.AnyType.get())
    ids = graph.create("prim::ListConstruct", [], 1)
    ids.output().setType(id_list_type)
    values = graph.create("prim::ListConstruct", [], 1)
    values.output().setType(value_list_type)
    graph.prependNode(values)
    graph.prependNode(ids)
    for i, node in enumerate(sites):
        # A placeholder right after the call gives an insertion point there (nodes go in before it).
        marker = graph.create("prim::Constant", [], 1)
        marker.output().setType(torch._C.NoneType.get())
        marker.insertAfter(node)
        with graph.insert_point_guard(marker):
            snapshot = _snapshot_graph(graph, node.output())
            site_id = graph.insertConstant(i)
            graph.insert("aten::append", [ids.output(), site_id])
            graph.insert("aten::append", [values.output(), snapshot])
        marker.destroy()
    for i, node in enumerate(choices):
        if node.kind() == "prim::Loop":
            points = [(node, 0), (next(node.blocks()), 1)]
        else:
            points = [(block, b) for b, block in enumerate(node.blocks())]
        for point, option in points:  # a Block as insertion point means its end
            with graph.insert_point_guard(point):
                graph.insert("aten::append", [ids.output(), graph.insertConstant(-1 - (2 * i + option))])

    output = next(graph.outputs())
    result = graph.create("prim::TupleConstruct", [output, ids.output(), values.output()], 1)
    result.output().setType(torch._C.TupleType([output.type(), id_list_type, value_list_type]))
    graph.appendNode(result)
    graph.eraseOutput(0)
    graph.registerOutput(result.output())


def _snapshot_graph(graph: torch._C.Graph, value: torch._C.Value) -> torch._C.Value:
    """Emit (at the insertion point) a detached copy of ``value``: tensors cloned, tuples elementwise."""
    kind = value.type().kind()
    if kind == "TensorType":
        return graph.insert("aten::clone", [graph.insert("aten::detach", [value])])
    if kind == "TupleType":
        element_types = value.type().elements()
        unpack = graph.insertNode(graph.create("prim::TupleUnpack", [value], len(element_types)))
        parts = []
        for out, element_type in zip(unpack.outputs(), element_types, strict=True):
            out.setType(element_type)
            parts.append(_snapshot_graph(graph, out))
        pack = graph.insertNode(graph.create("prim::TupleConstruct", parts, 1))
        pack.output().setType(value.type())
        return pack.output()
    copier = _copier(value.type())
    if copier is not None:
        return graph.insertGraph(copier.graph, [value])[0]
    return value  # immutable, or copied after the run (see _copied_in_graph)


# Values of these types cannot change after the call, so they need no copy.
_IMMUTABLE_TYPES = frozenset(
    {
        "NoneType",
        "IntType",
        "FloatType",
        "BoolType",
        "StringType",
        "ComplexType",
        "NumberType",
        "DeviceObjType",
    }
)


def _copied_in_graph(type_: torch._C.JitType) -> bool:
    """Whether :func:`_snapshot_graph` fully protects a value of this type from later in-place writes."""
    kind = type_.kind()
    if kind == "TupleType":
        return all(_copied_in_graph(t) for t in type_.elements())
    return kind == "TensorType" or kind in _IMMUTABLE_TYPES or _copier(type_) is not None


def _copy_tensor_list(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [x.detach().clone() for x in xs]


def _copy_optional_tensor(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.detach().clone()


def _copy_tensor_dict(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in d.items()}


_copiers: dict[str, torch.jit.ScriptFunction] = {}


def _copier(type_: torch._C.JitType) -> torch.jit.ScriptFunction | None:
    """A scripted function that snapshots a List[Tensor], Optional[Tensor] or Dict[str, Tensor], else None."""
    kind = type_.kind()
    if kind in ("ListType", "OptionalType") and type_.getElementType().kind() == "TensorType":
        function = _copy_tensor_list if kind == "ListType" else _copy_optional_tensor
    elif (
        kind == "DictType"
        and type_.getKeyType().kind() == "StringType"
        and type_.getValueType().kind() == "TensorType"
    ):
        function = _copy_tensor_dict
    else:
        return None
    if kind not in _copiers:  # scripted on first use: it takes a few milliseconds
        _copiers[kind] = torch.jit.script(function)
    return _copiers[kind]


class _Tracer:
    """Finds, for each leaf call, which call produced its first input.

    Walks back from the input through views and unpacking. A value coming out of an ``if`` depends on the
    branch taken, and a value carried by a loop on whether the loop body has run yet; both become a
    :class:`_Branch` whose choice is read from the run, where each such ``if`` or loop records its choices.
    ``if self.use_res_connect: return x + self.conv(x) else: return self.conv(x)`` is the usual case.
    """

    def __init__(self, site_of: dict[int, int]) -> None:
        self.site_of = site_of  # output Value.unique() of a site's call -> site index
        self.choices: list[torch._C.Node] = []  # the ``if`` and loop nodes whose choices must be recorded
        self._choice_index: dict[int, int] = {}

    def source(self, node: torch._C.Node) -> _Source:
        if node.inputsSize() < 2:
            return None
        return self._trace(node.inputsAt(1), node, (), frozenset())

    def _trace(
        self,
        value: torch._C.Value,
        consumer: torch._C.Node,
        loops: tuple[torch._C.Node, ...],
        visiting: frozenset[int],
    ) -> _Source:
        """``loops``: loops whose last pass made ``value``; their nodes ahead of ``consumer`` ran again."""
        chain = []
        while True:
            if value.unique() in visiting:
                return None  # a loop-carried value that only goes round the loop
            chain.append(value)
            producer = value.node()
            kind = producer.kind()
            if kind in _VIEW_OPS or kind in _UNPACK_OPS:
                value = producer.inputsAt(0)
                continue
            break
        visiting = visiting | {value.unique()}
        if kind == "prim::Param":  # a loop body's carried value (offset 0 is the iteration count)
            loop = producer.owningBlock().owningNode()
            if loop is None or loop.kind() != "prim::Loop" or value.offset() == 0:
                return None
            body_outputs = list(next(loop.blocks()).outputs())
            options = (
                self._trace(loop.inputsAt(value.offset() + 1), consumer, loops, visiting),
                self._trace(body_outputs[value.offset()], consumer, (*loops, loop), visiting),
            )
            producer = loop
        elif _reran(producer, consumer, loops):
            return None
        elif kind == "prim::CallMethod":
            options = None
        elif kind == "prim::If":
            k = value.offset()
            options = tuple(
                self._trace(list(b.outputs())[k], consumer, loops, visiting) for b in producer.blocks()
            )
        elif kind == "prim::Loop":
            body_outputs = list(next(producer.blocks()).outputs())
            options = (
                self._trace(producer.inputsAt(value.offset() + 2), consumer, loops, visiting),
                self._trace(body_outputs[value.offset() + 1], consumer, loops, visiting),
            )
        else:
            return None
        if _written_before(chain, consumer):
            return None
        if options is None:
            return self.site_of.get(value.unique())
        if all(o is None for o in options):
            return None
        return _Branch(self._register(producer), options)

    def _register(self, node: torch._C.Node) -> int:
        key = node.outputsAt(0).unique()
        if key not in self._choice_index:
            self._choice_index[key] = len(self.choices)
            self.choices.append(node)
        return self._choice_index[key]


def _reran(node: torch._C.Node, consumer: torch._C.Node, loops: tuple[torch._C.Node, ...]) -> bool:
    """Whether ``node``, in the body of one of ``loops`` and ahead of ``consumer``, ran again in this pass.

    Its latest run is then not the one from the previous pass that produced the value ``consumer`` reads.
    """
    if not loops or not node.isBefore(consumer):
        return False
    block = node.owningBlock()
    while block is not None and block.owningNode() is not None:
        owner = block.owningNode()
        if any(owner is loop for loop in loops):
            return True
        block = owner.owningBlock()
    return False


def _written_before(values: list[torch._C.Value], consumer: torch._C.Node) -> bool:
    """Whether an in-place op ahead of ``consumer`` writes to one of ``values`` (so the input differs)."""
    for v in values:
        for use in v.uses():
            user = use.user
            if user is consumer or use.offset != 0 or not _is_inplace(user.kind()):
                continue
            if user.isBefore(consumer):
                return True
    return False


# --------------------------------------------------------------------------------------------- helpers


def _walk(block: torch._C.Block) -> Iterator[torch._C.Node]:
    """Every node of ``block`` and its sub-blocks, in program order."""
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from _walk(sub)


def _module_path(value: torch._C.Value, graph_self: torch._C.Value) -> tuple[str, ...] | None:
    """The attribute path from the model (``graph_self``) to ``value``; None if not a GetAttr chain."""
    path: list[str] = []
    while value.unique() != graph_self.unique():
        node = value.node()
        if node.kind() != "prim::GetAttr":
            return None
        path.append(node.s("name"))
        value = node.input()
    return tuple(reversed(path))


def _submodule(module: torch.nn.Module, path: tuple[str, ...]) -> torch.nn.Module | None:
    for name in path:
        children = module._modules  # an OrderedModuleDict on a RecursiveScriptModule: no .get()
        if name not in children:
            return None
        module = children[name]
        if module is None:
            return None
    return module


def _has_children(module: torch.nn.Module) -> bool:
    return next(iter(module.children()), None) is not None


def _is_module_type(type_: torch._C.JitType, module: torch.jit.ScriptModule) -> bool:
    """Whether ``type_`` is the type of a module (or a module interface) of this model."""
    if type_.kind() == "InterfaceType":
        return True
    if type_.kind() != "ClassType":
        return False
    name = type_.qualified_name()
    return any(m._c._type().qualified_name() == name for m in module.modules())


def _is_inplace(kind: str) -> bool:
    return kind.startswith("aten::") and kind.endswith("_") and not kind.endswith("__")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _snapshot_py(value: object) -> object:
    """A detached copy of ``value``'s tensors, in the same containers."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        parts = [_snapshot_py(v) for v in value]
        return type(value)(*parts) if hasattr(value, "_fields") else tuple(parts)
    if isinstance(value, list):
        return [_snapshot_py(v) for v in value]
    if isinstance(value, dict):
        return {k: _snapshot_py(v) for k, v in value.items()}
    return value
