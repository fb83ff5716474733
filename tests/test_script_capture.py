"""glnet._script.script_leaf_calls against eager PyTorch: forward hooks on the eager model are the truth."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import Tensor, nn

from glnet._script import ScriptCall, script_leaf_calls
from glnet.errors import CaptureError

# torch.jit.script/trace/save/load warn that they are deprecated; they are what this module is for.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def eager_leaf_calls(model: nn.Module, *args: object) -> tuple[object, list[tuple[str, str, object]]]:
    """Run ``model`` with a cloning forward hook on each leaf: (output, [(name, type name, output)])."""
    calls: list[tuple[str, str, object]] = []
    counts: dict[str, int] = {}

    def clone(value: object) -> object:
        if isinstance(value, Tensor):
            return value.detach().clone()
        if isinstance(value, (tuple, list)):
            return type(value)(clone(v) for v in value)
        return value

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            k = counts.get(name, 0)
            counts[name] = k + 1
            calls.append((name if k == 0 else f"{name}:{k}", type(module).__name__, clone(output)))

        return hook

    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook_for(n)) for n, m in leaves]
    try:
        output = model(*args)
    finally:
        for h in handles:
            h.remove()
    return output, calls


def compiled(
    model: nn.Module, example: tuple, tmp_path, modes=("script", "trace")
) -> list[tuple[str, object]]:
    """``model`` scripted and/or traced, each saved and loaded back through a file."""
    result = []
    for mode in modes:
        module = torch.jit.script(model) if mode == "script" else torch.jit.trace(model, example)
        path = tmp_path / f"{mode}.pt"
        torch.jit.save(module, str(path))
        result.append((mode, torch.jit.load(str(path))))
    return result


def assert_same_calls(script_calls: list[ScriptCall], eager_calls: list[tuple[str, str, object]]) -> None:
    assert [c.name for c in script_calls] == [name for name, _, _ in eager_calls]
    assert [c.type_name for c in script_calls] == [type_name for _, type_name, _ in eager_calls]
    for call, (name, _, output) in zip(script_calls, eager_calls, strict=True):
        # bit-exact: both run the same ATen kernels on the same inputs
        torch.testing.assert_close(call.output, output, rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


def check(model: nn.Module, args: tuple, tmp_path, modes=("script", "trace")) -> dict[str, list[ScriptCall]]:
    """Compare every compiled form of ``model`` with eager hooks; return the calls per mode."""
    model.eval()
    with torch.no_grad():
        expected_output, expected = eager_leaf_calls(model, *args)
    by_mode = {}
    for mode, module in compiled(model, args, tmp_path, modes):
        with torch.no_grad():
            output, calls = script_leaf_calls(module, *args)
        torch.testing.assert_close(output, expected_output, rtol=0, atol=0)
        assert_same_calls(calls, expected)
        by_mode[mode] = calls
    return by_mode


class Residual(nn.Module):
    """A basic residual block: one in-place ReLU module called twice, and an in-place add."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Split(nn.Module):
    """A leaf module that returns a tuple."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, :2], x[:, 2:]


class TupleModel(nn.Module):
    """Returns a tuple, and feeds one element of a leaf's tuple output to the next leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
        self.split = Split()
        self.head = nn.Conv2d(2, 2, 1)
        self.act = nn.Tanh()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.split(self.stem(x))
        return self.head(a), self.act(b)


def test_sequential_matches_eager_and_links_inputs(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    )
    by_mode = check(model, (torch.randn(2, 3, 8, 8),), tmp_path)
    for calls in by_mode.values():
        assert [c.name for c in calls] == ["0", "1", "2", "3", "4", "5"]
        assert [c.input_from for c in calls] == [None, 0, 1, 2, 3, 4]


def test_residual_block_relu_called_twice(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Residual(), Residual())
    by_mode = check(model, (torch.randn(1, 4, 6, 6),), tmp_path)
    for calls in by_mode.values():
        names = [c.name for c in calls]
        assert names[:6] == ["0.conv1", "0.bn1", "0.relu", "0.conv2", "0.bn2", "0.relu:1"]
        assert names[6:] == ["1.conv1", "1.bn1", "1.relu", "1.conv2", "1.bn2", "1.relu:1"]
        assert [c.input_from for c in calls[:6]] == [None, 0, 1, 2, 3, None]  # relu:1 reads bn2 + identity
        assert calls[6].input_from == 5  # the second block's conv reads the first block's output


def test_tuple_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    by_mode = check(TupleModel(), (torch.randn(1, 3, 5, 5),), tmp_path)
    for calls in by_mode.values():
        assert [c.name for c in calls] == ["stem.0", "stem.1", "split", "head", "act"]
        assert isinstance(calls[2].output, tuple) and len(calls[2].output) == 2
        assert [c.input_from for c in calls] == [None, 0, 1, 2, 2]


class Containers(nn.Module):
    """Nested Sequential, ModuleList and ModuleDict, iterated in loops that scripting unrolls."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 3), "b": nn.Linear(4, 3)})

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        total = torch.zeros(x.shape[0], 3)
        for head in self.heads.values():
            total = total + head(x)
        return total


def test_nested_containers(tmp_path) -> None:
    torch.manual_seed(0)
    by_mode = check(Containers(), (torch.randn(3, 4),), tmp_path)
    for calls in by_mode.values():
        names = ["blocks.0.0", "blocks.0.1", "blocks.1.0", "blocks.1.1", "heads.a", "heads.b"]
        assert [c.name for c in calls] == names
        assert [c.input_from for c in calls] == [None, 0, 1, 2, 3, 3]


class Looped(nn.Module):
    """A real (not unrolled) loop and an ``if`` on the data, both around leaf calls."""

    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Linear(4, 4)
        self.act = nn.Tanh()
        self.pos = nn.ReLU()
        self.neg = nn.Sigmoid()

    def forward(self, x: Tensor, n: int) -> Tensor:
        for _ in range(n):
            x = self.act(self.step(x))
        if bool(x.sum() > 0):
            y = self.pos(x)
        else:
            y = self.neg(x)
        return y


def test_real_loop_and_data_dependent_branch(tmp_path) -> None:
    torch.manual_seed(0)
    model = Looped().eval()
    for _, module in compiled(model, (), tmp_path, modes=("script",)):
        for n, x in [(3, torch.ones(2, 4)), (0, -torch.ones(2, 4)), (2, torch.randn(2, 4))]:
            expected_output, expected = eager_leaf_calls(model, x, n)
            output, calls = script_leaf_calls(module, x, n)
            torch.testing.assert_close(output, expected_output, rtol=0, atol=0)
            assert_same_calls(calls, expected)
            sources = [c.input_from for c in calls]
            assert sources == [None] + [i for i in range(2 * n)]  # step <- act of the last pass, ...


class ReadsStale(nn.Module):
    """``b`` reads the loop-carried ``x`` after ``a``, which produced it last pass, has already run again."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 3)

    def forward(self, x: Tensor, n: int) -> Tensor:
        z = x
        for _ in range(n):
            y = self.a(x)
            z = self.b(x)
            x = y
        return z


def test_loop_carried_input_of_an_overwritten_call_is_not_linked(tmp_path) -> None:
    torch.manual_seed(0)
    model = ReadsStale().eval()
    ((_, module),) = compiled(model, (), tmp_path, modes=("script",))
    x = torch.randn(1, 3)
    expected_output, expected = eager_leaf_calls(model, x, 3)
    output, calls = script_leaf_calls(module, x, 3)
    torch.testing.assert_close(output, expected_output, rtol=0, atol=0)
    assert_same_calls(calls, expected)
    # a:1 reads a's output; b:1 reads it too, but a has run again (as a:1) by then
    assert [(c.name, c.input_from) for c in calls] == [
        ("a", None),
        ("b", None),
        ("a:1", 0),
        ("b:1", None),
        ("a:2", 2),
        ("b:2", None),
    ]


class Residualish(nn.Module):
    """``if self.use_res: return x + self.body(x) else: return self.body(x)``, as in MobileNetV2."""

    def __init__(self, use_res: bool) -> None:
        super().__init__()
        self.use_res = use_res
        self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res:
            return x + self.body(x)
        return self.body(x)


def test_input_from_through_if_branches(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Residualish(False), Residualish(True), nn.Linear(4, 2))
    by_mode = check(model, (torch.randn(2, 4),), tmp_path)
    for calls in by_mode.values():
        assert [c.input_from for c in calls] == [None, 0, 1, 2, None]


class Counter(nn.Module):
    """A leaf returning a non-tensor value."""

    def forward(self, x: Tensor) -> int:
        return x.shape[-1]


class NonTensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.count = Counter()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x) * self.count(x)


class Pieces(nn.Module):
    """A leaf returning a list of tensors, which an in-place op then changes."""

    def forward(self, x: Tensor) -> list[Tensor]:
        return [x * 2, x * 3]


class ListOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pieces = Pieces()
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        parts = self.pieces(x)
        parts[0].add_(100.0)
        return self.act(parts[1]) + parts[0]


def test_list_output_is_copied(tmp_path) -> None:
    by_mode = check(ListOutput(), (torch.randn(2, 3),), tmp_path, modes=("script",))
    calls = by_mode["script"]
    assert isinstance(calls[0].output, list) and len(calls[0].output) == 2
    assert calls[1].input_from == 0


def test_non_tensor_output(tmp_path) -> None:
    by_mode = check(NonTensor(), (torch.randn(2, 3),), tmp_path, modes=("script",))
    assert [(c.name, c.output) for c in by_mode["script"]][1] == ("count", 3)


def test_flatten_function_is_traced_back(tmp_path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 2 * 2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc(torch.flatten(self.conv(x), 1))

    torch.manual_seed(0)
    by_mode = check(Net(), (torch.randn(1, 1, 4, 4),), tmp_path, modes=("trace",))
    assert [c.input_from for c in by_mode["trace"]] == [None, 0]


def test_training_mode_runs_the_model_once() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU()).train()
    module = torch.jit.script(copy.deepcopy(model))
    x = torch.randn(2, 3, 4, 4)
    expected_output, expected = eager_leaf_calls(model, x)
    output, calls = script_leaf_calls(module, x)
    torch.testing.assert_close(output, expected_output)
    assert_same_calls(calls, expected)
    torch.testing.assert_close(getattr(module, "1").running_mean, model[1].running_mean, rtol=0, atol=0)
    assert int(getattr(module, "1").num_batches_tracked) == 1


def test_repeated_runs_use_the_cached_graph() -> None:
    torch.manual_seed(0)
    module = torch.jit.script(nn.Sequential(nn.Linear(2, 2), nn.ReLU()).eval())
    for _ in range(3):
        x = torch.randn(1, 2)
        output, calls = script_leaf_calls(module, x)
        torch.testing.assert_close(output, module(x))
        assert [c.name for c in calls] == ["0", "1"]


def test_childless_model_is_its_own_leaf() -> None:
    module = torch.jit.script(nn.Conv2d(1, 1, 1))
    x = torch.randn(1, 1, 2, 2)
    output, calls = script_leaf_calls(module, x)
    assert [(c.name, c.type_name, c.input_from) for c in calls] == [("", "Conv2d", None)]
    torch.testing.assert_close(calls[0].output, output)


def test_eager_module_is_rejected() -> None:
    with pytest.raises(TypeError):
        script_leaf_calls(nn.ReLU(), torch.zeros(1))


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)

    @torch.jit.interface
    class _Activation(nn.Module):
        def forward(self, input: Tensor) -> Tensor:
            pass


class RuntimeChoice(nn.Module):
    """Picks its submodule with a run-time index: the graph gets prim::ModuleContainerIndex."""

    def __init__(self) -> None:
        super().__init__()
        self.acts = nn.ModuleList([nn.ReLU(), nn.Tanh()])

    def forward(self, x: Tensor, i: int) -> Tensor:
        act: _Activation = self.acts[i]
        return act.forward(x)


def test_runtime_chosen_submodule_is_a_capture_error() -> None:
    module = torch.jit.script(RuntimeChoice())
    with pytest.raises(CaptureError, match="ModuleContainerIndex"):
        script_leaf_calls(module, torch.zeros(1), 0)


@pytest.mark.slow
def test_scripted_resnet18_matches_eager() -> None:
    from glnet._torchvision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected_output, expected = eager_leaf_calls(model, x)
        output, calls = script_leaf_calls(torch.jit.script(model), x)
    torch.testing.assert_close(output, expected_output)
    assert_same_calls(calls, expected)
    by_name = {c.name: i for i, c in enumerate(calls)}
    assert calls[by_name["layer1.0.bn1"]].input_from == by_name["layer1.0.conv1"]
    assert calls[by_name["layer2.0.downsample.0"]].input_from == by_name["layer1.1.relu:1"]
    assert calls[by_name["fc"]].input_from == by_name["avgpool"]
