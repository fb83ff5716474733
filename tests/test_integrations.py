"""Training frameworks, DDP and TensorBoard, with the real packages: a Lightning fit and a Hugging Face
Trainer run each draw a frame per step; under a 2-process gloo DDP run rank 1 installs nothing; the frames
that go into a SummaryWriter are read back from its event file."""

# ruff: noqa: I001  (glnet first: it makes torchvision importable before lightning imports it)
from __future__ import annotations

import datetime
import functools
import io
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from glnet.integrations.lightning import LiveCallback as LightningLive  # first: the torchvision fix
from glnet.integrations.transformers import LiveCallback as HFLive

import lightning as L
from lightning.pytorch.strategies import DDPStrategy

from glnet.live.wall import free_address
from glnet.wall import bind_gloo_to_loopback, loopback_interface

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import TinyNet

ROOT = Path(__file__).resolve().parent.parent
SIZE = (160, 90)
DDP_TIMEOUT = datetime.timedelta(seconds=90)  # a stuck rendezvous fails the test instead of hanging the run
pytestmark = pytest.mark.gl


def _quiet(_msg: str) -> None:
    pass


def _data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 5, (n,), generator=g)


def _frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _check_frames(folder: Path, n: int) -> None:
    frames = _frames(folder)
    assert len(frames) == n, f"{len(frames)} frames in {folder}"
    assert all(f.shape == (SIZE[1], SIZE[0], 3) and f.std() > 3 for f in frames)  # a drawn cloud, not blank


class _LitTiny(L.LightningModule):
    """TinyNet under Lightning with plain SGD; the tests override ``training_step`` to look inside a fit."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, i):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_draws_every_step_with_the_logged_figures(tmp_path):
    seen: dict[str, list[float]] = {"loss": [], "acc": []}

    class Lit(_LitTiny):
        def training_step(self, batch, _i):
            x, y = batch
            out = self(x)
            assert len(out) == len(x)  # the probe rode along and was stripped again
            loss = F.cross_entropy(out, y)
            acc = (out.argmax(1) == y).float().mean()
            self.log("train_acc", acc)
            seen["loss"].append(loss.item())
            seen["acc"].append(float(acc))
            return loss

    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    cb = LightningLive(
        probe=x[0], target=int(y[0]), headless=True, size=SIZE, record=tmp_path / "f", say=_quiet
    )
    model = Lit()
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[cb],
    )  # fmt: skip
    trainer.fit(model, loader)
    s = cb.last.stats
    assert s.steps == 3 and s.frames == 3 and s.viewer == "finished", s
    assert s.loss == pytest.approx(seen["loss"]) and s.acc == pytest.approx(seen["acc"])
    assert s.batch == 4  # the probe's extra row is not counted as a sample
    _check_frames(tmp_path / "f", 3)
    assert _no_hooks(model) and cb.live is None


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_lightning_failure_or_ctrl_c_closes_the_session_with_its_frames(tmp_path, failure):
    import signal

    class Lit(_LitTiny):
        def training_step(self, batch, i):
            if i == 2:
                raise failure("stop here")
            return super().training_step(batch, i)

    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    cb = LightningLive(probe=x[0], headless=True, size=SIZE, record=tmp_path / "f", say=_quiet)
    model = Lit()
    trainer = L.Trainer(
        max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[cb],
    )  # fmt: skip
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit if failure is KeyboardInterrupt else RuntimeError):  # Lightning exits 1
            trainer.fit(model, loader)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C after one
    s = cb.last.stats
    assert cb.live is None and s.steps == 2 and s.frames == 2 and s.viewer == "finished", s
    _check_frames(tmp_path / "f", 2)
    assert _no_hooks(model)


class _HFTiny(nn.Module):
    """A Hugging Face style model: keyword inputs, the loss computed inside from ``labels``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyNet()
        self.labels: list[list[int]] = []  # what each training forward got

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        logits = self.net(pixel_values)
        out = {"logits": logits}
        if labels is not None:
            self.labels.append(labels.tolist())
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def test_hf_trainer_run_draws_every_step_with_the_logged_loss(tmp_path):
    from transformers import Trainer, TrainingArguments

    x, y = _data()
    data = [{"pixel_values": a, "labels": int(b)} for a, b in zip(x, y, strict=True)]
    model = _HFTiny()
    logged: list[float] = []
    model.register_forward_hook(
        lambda _m, _a, out: logged.append(float(out["loss"])) if "loss" in out else None
    )
    cb = HFLive(probe=x[0], target=int(y[0]), headless=True, size=SIZE, record=tmp_path / "f", say=_quiet)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=4, logging_steps=1,
        report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
    s = cb.last.stats
    assert s.steps == 3 and s.frames == 3 and s.viewer == "finished", s
    # the Trainer logs the model's own loss, which holds the probe's (its label rode along in ``labels``)
    assert s.loss == pytest.approx(logged, rel=1e-5)
    # the probe joined pixel_values and its label joined labels: 4 + 1 rows, the last the probe's
    assert [len(v) for v in model.labels] == [5, 5, 5] and {v[-1] for v in model.labels} == {int(y[0])}
    _check_frames(tmp_path / "f", 3)
    assert _no_hooks(model.net) and cb.live is None


HF_FAILING = """
import sys, torch
sys.path.insert(0, {tests!r})
from glnet.integrations.transformers import LiveCallback
from transformers import Trainer, TrainingArguments
from test_integrations import _HFTiny, _data

class Failing(_HFTiny):
    def forward(self, pixel_values, labels=None):
        if len(self.labels) == 2:
            raise RuntimeError("the user's model fails at step 3")
        return super().forward(pixel_values, labels)

x, y = _data()
data = [{{"pixel_values": a, "labels": int(b)}} for a, b in zip(x, y)]
args = TrainingArguments(output_dir="out", max_steps=5, per_device_train_batch_size=4, report_to=[],
                         use_cpu=True, save_strategy="no", disable_tqdm=True)
cb = LiveCallback(probe=x[0], target=int(y[0]), headless=True, size=(160, 90), record="run.mp4")
Trainer(model=Failing(), args=args, train_dataset=data, callbacks=[cb]).train()
"""


def test_hf_run_that_fails_still_finishes_its_video(tmp_path):
    """The Trainer has no exception hook: the callback closes the session at interpreter exit."""
    import av

    code = HF_FAILING.format(tests=str(ROOT / "tests"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1 and "the user's model fails at step 3" in r.stderr, r.stderr[-2000:]
    with av.open(str(tmp_path / "run.mp4")) as f:  # a finished file: its index was written
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 2 and frames[-1].std() > 3


def _ddp_rank(rank: int, folder: str, address: str) -> None:
    import torch.distributed as dist

    import glnet

    bind_gloo_to_loopback()
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2, timeout=DDP_TIMEOUT)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(TinyNet().train())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = _data(8)
        with glnet.live(model, x[0], headless=True, size=SIZE, record=f"{folder}/f", say=_quiet) as viz:
            hooks = not _no_hooks(model)
            viewers = [p.name for p in multiprocessing.active_children()]
            for _ in range(3):
                out = model(x[rank * 4 : rank * 4 + 4])
                assert len(out) == 4
                loss = F.cross_entropy(out, y[rank * 4 : rank * 4 + 4])
                opt.zero_grad()
                loss.backward()  # the gradients' all-reduce: both ranks take part
                opt.step()
                viz.step(loss=float(loss))
        dist.barrier()
        report = {"kind": type(viz).__name__, "hooks": hooks, "viewers": viewers, "frames": viz.stats.frames}
        Path(folder, f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("gloo")
def test_ddp_rank_1_installs_no_hooks_and_starts_no_viewer(tmp_path):
    torch.multiprocessing.spawn(_ddp_rank, args=(str(tmp_path), free_address()), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["kind"] == "Live" and r0["hooks"] and r0["viewers"] == ["glnet-viewer"] and r0["frames"] == 3
    assert r1 == {"kind": "IdleLive", "hooks": False, "viewers": [], "frames": 0}
    _check_frames(tmp_path / "f", 3)


class _LitDDP(_LitTiny):
    """Writes, at its first step on each rank, whether that rank's module has hooks and a viewer child."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def training_step(self, batch, i):
        if i == 0:
            report = {
                "hooks": not _no_hooks(self),
                "viewers": [p.name for p in multiprocessing.active_children()],
            }
            Path(self.folder, f"rank{self.global_rank}.json").write_text(json.dumps(report))
        return super().training_step(batch, i)


def _note(path: Path, message: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(message + "\n")


@pytest.mark.usefixtures("gloo")
def test_lightning_ddp_strategy_draws_on_rank_0_only(tmp_path, monkeypatch):
    """Lightning's own DDP (forked here: a spawned child would import lightning before glnet's torchvision
    fix on this machine's CPU torch), two ranks."""
    x, y = _data(16)
    notes = tmp_path / "notes.txt"
    say = functools.partial(_note, notes)  # rank 0 is a child process: its notes go to a file
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", loopback_interface() or "lo")  # the forked rank inherits it
    host_port = free_address().removeprefix("tcp://").rsplit(":", 1)
    monkeypatch.setenv("MASTER_ADDR", host_port[0])  # Lightning takes these, and they go when the test ends
    monkeypatch.setenv("MASTER_PORT", host_port[1])
    cb = LightningLive(probe=x[0], headless=True, size=SIZE, record=str(tmp_path / "f"), say=say)
    trainer = L.Trainer(
        max_steps=3, accelerator="cpu", devices=2, logger=False,
        strategy=DDPStrategy(start_method="fork", process_group_backend="gloo", timeout=DDP_TIMEOUT),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    trainer.fit(_LitDDP(str(tmp_path)), loader)
    r0, r1 = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0 == {"hooks": True, "viewers": ["glnet-viewer"]} and r1 == {"hooks": False, "viewers": []}
    _check_frames(tmp_path / "f", 3)  # one for every step of rank 0
    # DDP calls the module with (batch, index) and training_step calls it again with x: the probe joins that
    assert "viewer process" in notes.read_text() and "nothing is captured" not in notes.read_text()


def test_rank_from_the_environment_gives_an_idle_session(monkeypatch):
    import glnet

    monkeypatch.setenv("RANK", "3")
    model = TinyNet().train()
    with glnet.live(model, torch.randn(3, 16, 16), headless=True, say=_quiet) as viz:
        model(torch.randn(2, 3, 16, 16)).sum().backward()
        viz.step(loss=1.0)
    assert type(viz).__name__ == "IdleLive" and _no_hooks(model) and viz.stats.steps == 1
    assert multiprocessing.active_children() == []


def test_tensorboard_gets_every_drawn_frame(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    import glnet

    model = TinyNet().train()
    x, y = _data(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = SummaryWriter(str(tmp_path / "tb"))
    with glnet.live(
        model, x[0], headless=True, size=SIZE, tensorboard=writer, every=2, policy="queue", say=_quiet
    ) as viz:
        for _ in range(6):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            viz.step(loss=float(loss))
    writer.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    images = acc.Images("glnet/live")
    assert [e.step for e in images] == [1, 3, 5] and viz.stats.frames == 3
    for e in images:
        img = np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB"))
        assert (e.width, e.height) == SIZE and img.shape == (SIZE[1], SIZE[0], 3)
        assert img.std() > 3 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # a drawn cloud


def test_tensorboard_must_be_a_writer():
    import glnet
    from glnet.errors import InputError

    with pytest.raises(InputError, match="SummaryWriter"):
        glnet.live(TinyNet(), torch.randn(3, 16, 16), tensorboard="runs/")


@pytest.mark.parametrize("script", ["lightning_live.py", "hf_trainer_live.py"])
def test_examples_run_headless(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLNET_EXAMPLE_STEPS": "2", "GLNET_EXAMPLE_RECORD": "f"}
    env.pop("DISPLAY", None)
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_frames(tmp_path / "f")) == 2, r.stderr[-2000:]


@pytest.mark.parametrize("script", ["lightning_live.py", "hf_trainer_live.py"])
def test_readme_shows_the_example_scripts_as_they_run(script):
    code = (ROOT / "examples" / script).read_text(encoding="utf-8").split("\n", 2)[2].strip()  # no docstring
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## Your training loop", 1)[1]
    assert f"# examples/{script}\n{code}\n```" in readme
