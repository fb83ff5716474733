"""What the viewer process draws while a model trains: the trace's scene, each frame that arrives in a slot,
the weight panels, the HUD and the loss/accuracy curves. GL on the calling thread; usable in-process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..render.gradflow import DeadUnits, gradflow_image
from .handover import NO_GRAD, TOP_K, FrameMeta, Slots
from .upload import choose_upload

if TYPE_CHECKING:
    from ..app import Visualization
    from ..camera import Camera

__all__ = ["LiveView", "thin"]


def thin(values: Sequence[float], n: int = 400) -> list[float]:
    """At most ``n`` evenly spaced points of a curve (the HUD plot is a few hundred pixels wide)."""
    if len(values) <= n:
        return list(values)
    idx = np.linspace(0, len(values) - 1, n).round().astype(int)
    return [values[i] for i in idx]


class LiveView:
    """The live scene over ``vis`` (owned by the caller): :meth:`absorb` every frame message, :meth:`present`
    the ones drawn, :meth:`draw`."""

    def __init__(
        self,
        vis: Visualization,
        slots: Slots,
        offsets: Sequence[int],
        counts: Sequence[int],
        *,
        update_path: str = "auto",
        title: str = "",
        total_steps: int | None = None,
    ) -> None:
        self.vis = vis
        self.upload, self.why = choose_upload(vis.cloud, slots, offsets, counts, update_path)
        self.slots = slots
        self.counts = list(counts)
        self.dead = DeadUnits(offsets, counts, slots.device)
        self.grad_norms: list[float | None] = []  # the shown step's, per layer (None: no gradient)
        self.dead_frac: list[float | None] = []  # per layer, over the last activation frames
        trace = vis.trace
        self.title = title or trace.model_name or "model"
        self.total_steps = total_steps
        self.loss: list[float] = []
        self.acc: list[float] = []
        self.shown: FrameMeta | None = None
        self.newest: FrameMeta | None = None  # the newest frame handed over, drawn or not
        self.frames = 0
        self.finished = False
        self.stopping = ""
        self.frame_ms: float | None = None
        self.weights0 = {
            i: r.weight.detach().to("cpu", torch.float32).clone()
            for i, r in enumerate(trace.layers)
            if isinstance(r.weight, torch.Tensor)
        }

    # -- what arrives ------------------------------------------------------------------------------------
    def absorb(self, meta: FrameMeta) -> None:
        """Take a frame message's numbers (curves, HUD), whether or not its frame is drawn."""
        self.loss.extend(meta.losses)
        self.acc.extend(meta.accs)
        self.newest = meta

    def present(self, i: int, meta: FrameMeta) -> None:
        """Move slot ``i`` (the frame of ``meta``) into the cloud."""
        self.upload.present(i, meta.mode)
        self.vis.scene.use_values(None)  # the frame is in the GL buffer now, not in the trace's tensors
        self._gradient_flow(i, meta.mode)
        self._follow(i, meta.mode)
        self.vis.ranges = [layer.range for layer in self.vis.cloud.layers]
        self.frames += 1
        self.shown = meta

    def _gradient_flow(self, i: int, mode: str) -> None:
        """Count dead units in slot ``i`` (activation frames) on its device, and read its gradient norms:
        one small tensor to the host, before the slot goes back to the trainer."""
        slots = self.slots
        if slots.events is not None:  # the trainer's copy into the slot, ordered on the GPU
            torch.cuda.current_stream(slots.device).wait_event(slots.events[i])
        if mode == "activations":
            self.dead.add(slots.data[i])
        n = len(self.dead.starts)
        side = getattr(slots, "side", None)
        parts = [self.dead.fractions()]
        if side is not None and side.shape[1] >= n:
            parts.append(side[i])
        host = torch.cat(parts).cpu().tolist()
        self.dead_frac = [v if np.isfinite(v) else None for v in host[:n]]
        self.grad_norms = [None if v == NO_GRAD else v for v in host[n : 2 * n]]
        top = host[2 * n : 2 * n + 2 * TOP_K]
        if len(top) == 2 * TOP_K and top[0] >= 0:
            pairs = [(int(k), p) for k, p in zip(top[:TOP_K], top[TOP_K:], strict=True) if k >= 0]
            if [(k, round(p, 3)) for k, p in pairs] != [
                (q.index, round(q.prob, 3)) for q in self.vis.predictions
            ]:
                self.vis.show_predictions(top=pairs)

    def _follow(self, i: int, mode: str) -> None:
        """Copy what the histogram panels and the inspector need out of slot ``i`` before it goes back:
        every few frames the whole frame for the panels, and the inspected neuron's layer."""
        data = self.slots.data[i]
        hist = self.vis.scene.histograms
        if mode == "activations" and hist.active and self.frames % hist.every == 0:
            snap = data.clone()
            hist.set_values(
                [snap[s : s + n] for s, n in zip(self.dead.starts.tolist(), self.counts, strict=True)],
                self.vis.ranges,
            )
            hist.refresh()
        ins = self.vis.inspection
        if ins is not None and mode in ("activations", "gradients"):
            s = int(self.dead.starts[ins.layer_index])
            n = self.counts[ins.layer_index]
            self.vis.refresh_inspection(
                ins.layer_index, data[s : s + n].clone(), gradients=mode == "gradients"
            )

    def set_weights(self, mode: str, weights: dict[int, torch.Tensor]) -> None:
        """Weight panels: the filters as they are now, or in ``weights`` mode their change since the start."""
        cloud = self.vis.cloud
        for i, w in weights.items():
            if i not in cloud.weights:
                continue
            w0 = self.weights0.get(i)
            data = w - w0 if mode == "weights" and w0 is not None and w0.shape == w.shape else w
            cloud.set_weight(i, data)

    # -- drawing -----------------------------------------------------------------------------------------
    def hud_lines(self, camera: Camera) -> list[str]:
        """Model, step, loss, what is shown, the layer ahead, the update path and frame counts."""
        m = self.shown
        total = f"/{self.total_steps}" if self.total_steps else ""
        step = f"step {m.step}{total}" if m else "before training"
        loss = f"loss {m.loss:.4g}" if m and m.loss is not None else ""
        acc = f"acc {m.acc:.2f}" if m and m.acc is not None else ""
        head = "  ·  ".join(p for p in (self.title, step, loss, acc) if p)
        sps = self.newest.samples_per_s if self.newest else None
        if self.finished:
            status = f"stopped: {self.stopping}" if self.stopping else "finished"
        else:
            status = "stopping" if self.stopping else ""
        state = "  ·  ".join(
            p
            for p in (
                f"{sps:.1f} samples/s" if sps else "",
                f"showing {m.mode if m else 'activations'} (1/2/3, G, Shift+W)",
                status,
            )
            if p
        )
        layer = self.vis.hud_lines(camera, None)[1:3]
        tail = f"update path: {self.upload.name}  ·  frames {self.frames}"
        if self.frame_ms is not None:
            tail += f"  ·  frame {self.frame_ms:.0f} ms"
        lines = [head, state, *layer, tail]
        if m and m.note:
            lines.append("NaN/Inf: " + m.note)
        return lines

    def curves(self) -> dict[str, Sequence[float]]:
        """Loss (and accuracy) over every step handed over so far."""
        curves: dict[str, Sequence[float]] = {"loss": thin(self.loss)}
        if self.acc:
            curves["accuracy"] = thin(self.acc)
        return curves

    def draw(self, camera: Camera, target: Any, *, hud: bool = True) -> None:
        """One frame into ``target`` (a framebuffer or the window's screen); ``hud=False``: no HUD."""
        t0 = time.perf_counter()
        if hud and (self.grad_norms or self.dead.frames):
            self._set_gradflow(target.height)
        lines = self.hud_lines(camera) if hud else False
        self.vis.render(camera, target, hud=lines, curves=self.curves() if hud else None, finish=True)
        ms = (time.perf_counter() - t0) * 1e3
        self.frame_ms = ms if self.frame_ms is None else 0.8 * self.frame_ms + 0.2 * ms

    def _set_gradflow(self, height: int) -> None:
        """The gradient-flow chart at the HUD's bottom right (re-rendered only when its numbers change)."""
        names = [r.name for r in self.vis.trace.layers]
        norms = self.grad_norms or [None] * len(names)
        dead, window = self.dead_frac, self.dead.window
        key = (height, tuple(norms), tuple(dead), window)
        self.vis.scene.hud.set_panel(
            "gradflow", key, lambda: gradflow_image(names, norms, height, dead=dead, dead_steps=window)
        )

    def close(self) -> None:
        """Release the upload path (context current); the scene stays the caller's."""
        self.upload.close()
