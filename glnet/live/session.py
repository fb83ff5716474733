"""The trainer's side of a live session (:func:`glnet.live`): probe hooks, the hand-over, and the viewer
process it starts and watches. The trainer never holds a GL context and never waits for a frame."""

from __future__ import annotations

import collections
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..capture import Trace, capture, model_device
from ..errors import InputError, NonFiniteError
from .handover import NO_GRAD, TOP_K, FrameMeta, Handover, PanelWeights, Slots, check_update_path, slot_count
from .process import ViewerProcess, WallRanks, exit_reason, viewer_trace
from .stats import LiveStats, json_number
from .tap import ProbeTap
from .viewer import ViewerSpec
from .wall import free_address, parse_wall

if TYPE_CHECKING:
    from ..camera import Camera
    from .wall import WallSpec

__all__ = ["MODES", "Live", "live", "say_stderr"]

MODES: tuple[str, ...] = ("activations", "gradients", "weights")
ON_CLOSE = ("continue", "stop")
PANEL_SECONDS = {"weights": 1.0}  # how often the weight panels are refreshed, by mode (else 10 s)


def say_stderr(msg: str) -> None:
    """The default ``say``: one line on stderr, flushed."""
    print(msg, file=sys.stderr, flush=True)


def _as_probe(probe: torch.Tensor) -> torch.Tensor:
    """A batch of one: one sample (1-D or 3-D: a vector or an image) gets a batch dimension; a larger batch
    gives its first sample."""
    if not isinstance(probe, torch.Tensor):
        raise InputError(f"the probe must be a tensor, not {type(probe).__name__}")
    p = probe.detach()
    if p.dim() in (0, 1, 3):
        p = p.unsqueeze(0)
    return p[:1].clone()


class Live:
    """A model drawn live while it trains, by a viewer process of its own. Use :func:`live` to make one."""

    def __init__(
        self,
        model: nn.Module,
        probe: torch.Tensor,
        *,
        target: int | torch.Tensor | None = None,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        every: int = 1,
        mode: str = "activations",
        headless: bool | None = None,
        record: str | os.PathLike[str] | None = None,
        size: tuple[int, int] = (1280, 720),
        fps: float = 15.0,
        renderer: str = "auto",
        camera: str | Camera | None = None,
        keep_going: bool = False,
        policy: str | None = None,
        queue_mb: float = 256.0,
        update_path: str = "auto",
        granularity: str = "layer",
        title: str = "",
        total_steps: int | None = None,
        hold: bool = True,
        on_close: str = "continue",
        say: Callable[[str], None] | None = None,
        start_timeout: float = 180.0,
        labels: Sequence[str] | None = None,
        gl_device: int | None = None,
        tensorboard: Any = None,
        tensorboard_tag: str = "glnet/live",
        hud: bool = True,
        wall: str | WallSpec | None = None,
        wall_timeout: float = 60.0,
    ) -> None:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module  # hooks go on the wrapped module, which runs the layers
        if tensorboard is not None and not callable(getattr(tensorboard, "add_image", None)):
            raise InputError("tensorboard must be a SummaryWriter (something with add_image)")
        if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
            raise InputError("glnet.live needs a torch nn.Module (TorchScript modules take no hooks)")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"every must be a positive integer, not {every!r}")
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if on_close not in ON_CLOSE:
            raise InputError(f"on_close must be 'continue' or 'stop', not {on_close!r}")
        self.model = model
        self.probe = _as_probe(probe)
        self.target = target
        self.criterion = criterion or nn.functional.cross_entropy
        self.every = every
        self._mode = mode
        self.headless = headless
        self.record = os.fspath(record) if record is not None else None
        self.size = (int(size[0]), int(size[1]))
        self.fps = fps
        self.renderer = renderer
        self.camera_spec = camera
        self.keep_going = keep_going
        self.policy = policy or ("queue" if record else "latest")
        self.queue_mb = queue_mb
        self.prefer_path = update_path
        self.granularity = granularity
        self.title = title or type(model).__name__
        self.total_steps = total_steps
        self.hold = hold
        self.on_close = on_close
        self.say = say or say_stderr
        self.start_timeout = start_timeout
        self.labels = list(labels) if labels is not None else None  # class names for the top-5
        self.gl_device = gl_device  # the EGL device a headless viewer renders on (default: the model's GPU)
        self.tensorboard, self.tensorboard_tag = tensorboard, tensorboard_tag  # drawn frames go there
        self.hud, self.wall, self.wall_timeout = bool(hud), parse_wall(wall), float(wall_timeout)
        self._wall: WallRanks | None = None  # the wall's other ranks (the viewer is rank 0)
        self.size = self.wall.size if self.wall is not None else self.size  # a wall records its whole picture
        self.stats = LiveStats()
        self.note = ""
        self.stop_reason = ""
        self.finished = False
        self.trace: Trace | None = None
        self.tap: ProbeTap | None = None
        self.viewer_info: dict[str, Any] = {}
        self._paused = False
        self._stop = False
        self._handover: Handover | None = None
        self._viewer: ViewerProcess | None = None
        self._superseded = 0  # frames the viewer skipped because a newer one had come
        self._panels: PanelWeights | None = None
        self._viewer_alive = False
        self._weights: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._wflat: torch.Tensor | None = None
        self._panels_at = 0.0
        self._panels_mode = mode
        self._sent_losses = 0
        self._sent_accs = 0
        self._captures_seen = 0
        self._tap_seconds_seen = 0.0
        self._last_step_end: float | None = None
        self._first_forward: float | None = None
        self._samples_window: collections.deque[tuple[float, int]] = collections.deque(maxlen=20)
        self._started = False
        self._closed = False
        self._warned_skip = False
        self._target_cache: torch.Tensor | None = None
        self._grad_norms: torch.Tensor | None = None  # the last handed-over step's, on the model's device

    # -- set-up ---------------------------------------------------------------------------------------------
    def start(self) -> Live:
        """Capture the layer list on the probe, start the viewer process, and install the hooks."""
        if self._started:
            return self
        self._started = True
        from ..gpu.context import has_display

        if self.headless is None:
            self.headless = self.wall is not None or not has_display()
        if self.wall is not None and not self.headless:
            raise InputError("a live wall runs headless (record= writes the stitched picture)")
        if self.gl_device is not None and not self.headless:
            raise InputError("gl_device picks a headless viewer's GPU; a window draws on its display's GPU")
        model = self.model
        device = model_device(model)
        check_update_path(self.prefer_path, device)
        self.probe = self.probe.to(device)
        self.trace = capture(
            model, self.probe, granularity=self.granularity, eval_mode=True,  # type: ignore[arg-type]
            model_name=self.title,
        )  # fmt: skip
        tap = ProbeTap(model, self.trace.layers, ride_along=self.probe, device=device)
        tap.when = lambda m: m.training and torch.is_grad_enabled() and not self.paused
        if self.target is not None:
            tap.inject = self._probe_gradient
            tap.ride_label = torch.as_tensor(self.target).reshape(-1)[:1]
        tap.grads = self._mode == "gradients"
        tap.armed = True
        self.tap = tap
        for i, r in enumerate(self.trace.layers):
            w = r.weight
            if isinstance(w, torch.Tensor) and w.dim() >= 1 and w.shape[0] == r.grid[0]:
                self._weights[i] = (w, w.detach().clone())
        if self._weights:
            self._panels = PanelWeights({i: w for i, (w, _) in self._weights.items()}, device)
        n_slots = slot_count(self.policy, tap.nbytes, self.queue_mb, device)
        slots = Slots(n_slots, tap.flat.numel(), device, side=len(self.trace.layers) + 2 * TOP_K)
        self._handover = Handover(slots, self.policy)
        self.stats.bytes_per_update = tap.nbytes
        try:
            self._spawn(slots)
        except BaseException:
            for proc in (self._viewer, self._wall):
                if proc is not None:
                    proc.close()
            raise
        tap.install()
        self._panels_at = time.perf_counter()
        self._first_forward = time.perf_counter()
        return self

    def _spawn(self, slots: Slots) -> None:
        assert self.trace is not None and self.tap is not None
        spec = ViewerSpec(
            trace=viewer_trace(self.trace),
            offsets=list(self.tap.offsets),
            counts=[r.neurons for r in self.trace.layers],
            policy=self.policy,
            headless=bool(self.headless),
            record=self.record,
            size=self.size,
            fps=self.fps,
            renderer=self.renderer,
            camera=self.camera_spec,
            update_path=self.prefer_path,
            title=self.title,
            total_steps=self.total_steps,
            hold=self.hold,
            panels=self._panels,
            labels=self.labels,
            cuda_device=slots.device.index if slots.device.type == "cuda" else None,  # a tensor's: never None
            gl_device=self.gl_device,
            images=self.tensorboard is not None,
            hud=self.hud,
            wall=self.wall,
            wall_addr=free_address() if self.wall is not None else "",
            wall_timeout=self.wall_timeout,
        )
        self._wall = WallRanks(spec, slots, self.stats) if self.wall is not None else None
        self._viewer = ViewerProcess(spec, slots)
        self._viewer_alive = True
        self.stats.viewer_pid = self._viewer.pid
        info = self.viewer_info = self._viewer.wait_ready(self.start_timeout)
        s = self.stats
        s.update_path, s.renderer, s.gl_renderer, s.viewer = (
            info["update_path"], info["renderer"], info["gl_renderer"], "running",
        )  # fmt: skip
        why = info.get("why")
        self.say(
            f"glnet: viewer process {info['pid']} ({'headless' if self.headless else 'window'}); "
            f"update path: {info['update_path']}" + (f" ({why})" if why else "")
        )

    def __enter__(self) -> Live:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _probe_gradient(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The gradient of the probe's own loss with respect to its output row, weighted as one sample of a
        mean-reduced batch loss (added to that row in the backward pass)."""
        target = self._target_cache
        if target is None or target.device != logits.device:
            t = self.target if isinstance(self.target, torch.Tensor) else torch.tensor(self.target)
            target = self._target_cache = t.to(logits.device).reshape(-1)[:1]
        batch = max(1, (self.tap.batch or 2) - 1) if self.tap else 1
        try:
            with torch.enable_grad():
                z = logits.detach().float().requires_grad_(True)
                loss = self.criterion(z[None], target)
                (g,) = torch.autograd.grad(loss, z)
        except (RuntimeError, ValueError, IndexError) as e:  # not a classifier's output: no probe gradient
            if self.tap is not None:
                self.tap.inject = None
            self.say(
                f"glnet: note: the probe's loss cannot be computed ({str(e).splitlines()[0][:120]}); "
                "its gradients show only what the batch sends it"
            )
            return None
        return (g / batch).to(logits.dtype)

    # -- what the trainer sets and reads -----------------------------------------------------------------
    @property
    def mode(self) -> str:
        """What the cloud shows: ``activations``, ``gradients`` or ``weights`` (change since the start)."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
        self._mode = value
        if self.tap is not None:
            self.tap.grads = value == "gradients"

    @property
    def should_stop(self) -> bool:
        """True once :meth:`request_stop` was called (or the viewer went away with ``on_close="stop"``)."""
        return self._stop

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the training loop to end after its current step."""
        if not self._stop:
            self.stop_reason = reason
            self._stop = True

    @property
    def paused(self) -> bool:
        """While paused nothing is captured and the probe does not join the batch (benchmarks compare)."""
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = bool(value)
        if self.tap is not None:
            self.tap.armed = not self._paused
        if not self._paused:  # the next step's time starts now, not at the last step before the pause
            self._last_step_end = None
            self._first_forward = time.perf_counter()

    @property
    def handover(self) -> Handover | None:
        """The staging slots and their bookkeeping (``slots.data[last]`` holds the newest frame)."""
        return self._handover

    @property
    def viewer_alive(self) -> bool:
        """The viewer process is (as far as the last step saw) running."""
        return self._viewer_alive

    def samples_per_s(self) -> float | None:
        """Training samples per second over the last steps."""
        w = self._samples_window
        if len(w) < 2:
            return None
        dt = w[-1][0] - w[0][0]
        return sum(n for _, n in list(w)[1:]) / dt if dt > 0 else None

    # -- the viewer's messages --------------------------------------------------------------------------
    def _poll(self) -> None:
        """Take the viewer's messages (never waits) and notice when it is gone."""
        v = self._viewer
        if v is None:
            return
        for msg in v.messages():
            self._on_message(msg)
        if self._viewer_alive and not v.alive():
            for msg in v.messages(0.05):  # its last words may still be in the pipe
                self._on_message(msg)
            self._viewer_gone(exit_reason(v.exitcode), v.exitcode)
        if self._wall is not None:
            self._wall.poll(self.stats, self._viewer_alive)

    def _on_message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "released":
            assert self._handover is not None
            for i in msg[1]:
                self._handover.release(i)
            self._counters(msg[2])
        elif kind == "done":
            self._counters(msg[1])
            WallRanks.report(msg[1].get("wall"), self.stats)
            dead = msg[1].get("dead_frac")
            if dead is not None and self.trace is not None:
                names = [r.name for r in self.trace.layers]
                self.stats.dead_frac = {n: json_number(v) for n, v in zip(names, dead, strict=False)}
        elif kind == "mode":
            self.mode = msg[1]
            self.say(f"glnet: showing {msg[1]}")
        elif kind == "closed":
            self._viewer_gone(f"closed ({msg[1]})", None)
        elif kind == "image" and self.tensorboard is not None:  # a drawn frame, (H, W, 3) uint8
            self.tensorboard.add_image(self.tensorboard_tag, msg[2], msg[1], dataformats="HWC")
        elif kind == "wall":  # rank 0 lost the wall's other ranks and draws every tile itself
            WallRanks.lost(msg[1], msg[2], self.stats)
        elif kind == "error":
            self.say(f"glnet: the viewer failed: {msg[2]}")
            self.stats.viewer = f"failed ({msg[2]})"

    def _counters(self, c: dict[str, Any]) -> None:
        s = self.stats
        s.frames = int(c["frames"])
        s.bytes_device_to_host = int(c["bytes_device_to_host"])
        s.range_bytes_to_host = int(c["range_bytes_to_host"])
        self._superseded = int(c["superseded"])
        self._update_dropped()

    def _update_dropped(self) -> None:
        h = self._handover
        self.stats.dropped = (h.dropped if h else 0) + self._superseded

    def _viewer_gone(self, state: str, exitcode: int | None) -> None:
        """The window was closed or the viewer died while training runs: go on or stop, as chosen."""
        if not self._viewer_alive:
            return
        self._viewer_alive = False
        s = self.stats
        if not s.viewer.startswith("failed"):
            s.viewer = state
        s.viewer_exitcode = exitcode
        s.viewer_lost_at_step = s.steps + 1  # noticed at the start of the next step
        if self.finished:
            return
        if self.on_close == "stop":
            self.say(f"glnet: the viewer {state}: stopping after this step")
            self.request_stop("window closed" if state.startswith("closed") else f"viewer {state}")
        else:
            self.say(f"glnet: the viewer {state}; training goes on without it")

    # -- one training step -------------------------------------------------------------------------------
    def _source(self) -> tuple[torch.Tensor | None, str]:
        """The packed frame to hand over for the current mode, and the mode it really shows."""
        tap = self.tap
        assert tap is not None
        if self._mode == "gradients" and tap.grad_flat is not None and any(tap.grad_filled):
            return tap.grad_flat, "gradients"
        if self._mode == "weights" and self._weights:
            return self._weight_change(), "weights"
        return (tap.flat if any(tap.filled) else None), "activations"

    def _weight_change(self) -> torch.Tensor:
        """Each output channel's neurons set to the relative change of that channel's filter since the start
        (||w - w0|| / ||w0||); layers without weights (pooling) stay 0."""
        tap = self.tap
        assert tap is not None
        if self._wflat is None:
            self._wflat = torch.zeros_like(tap.flat)
        views = tap.views_of(self._wflat)
        with torch.no_grad():
            for i, (w, w0) in self._weights.items():
                c = w0.shape[0]
                moved = (w.detach() - w0).reshape(c, -1).norm(dim=1)
                d = moved / w0.reshape(c, -1).norm(dim=1).clamp_min(1e-12)
                views[i].copy_(d.view(c, *([1] * (views[i].dim() - 1))).expand_as(views[i]))
        return self._wflat

    def _send_panels(self, now: float) -> None:
        """Current weights for the viewer's panels: once a second in weights mode, else every 10 s."""
        interval = PANEL_SECONDS.get(self._mode, 10.0)
        if not self._weights or (self._mode == self._panels_mode and now - self._panels_at < interval):
            return
        self._panels_at, self._panels_mode = now, self._mode
        if self._panels is not None:
            self._panels.write({i: w for i, (w, _) in self._weights.items()})
            self._viewer.send("weights", self._mode)

    def _hand_over(self, src: torch.Tensor, meta: FrameMeta) -> None:
        h = self._handover
        assert h is not None and self.tap is not None
        self._grad_norms = self.tap.grad_norms()  # for the stats even when the frame is dropped
        i = h.acquire()
        if i is None:
            self._update_dropped()
            return
        h.slots.write(i, src, torch.cat([self._grad_norms, self.tap.top_k()]))
        s = self.stats
        meta.losses, self._sent_losses = s.loss[self._sent_losses :], len(s.loss)
        meta.accs, self._sent_accs = s.acc[self._sent_accs :], len(s.acc)
        meta.samples_per_s = self.samples_per_s()
        meta.t = time.perf_counter()
        self._viewer.send("frame", i, meta)
        h.commit(i)
        s.updates = h.published

    def step(
        self,
        loss: float | None = None,
        *,
        acc: float | None = None,
        samples: int | None = None,
        nonfinite_layer: str | None = None,
    ) -> None:
        """End of one training step: hand this step's probe capture to the viewer and record the numbers.

        Call it after ``optimizer.step()``. It never waits for the viewer. A non-finite ``loss`` is shown
        (HUD, NaN-coloured neurons) and raises :class:`NonFiniteError` naming the first layer whose probe
        values hold NaN/Inf (``nonfinite_layer`` overrides that name), unless ``keep_going``.
        """
        if not self._started:
            raise RuntimeError("Live.step() before start() (use it inside 'with glnet.live(...) as viz')")
        t0 = time.perf_counter()
        tap = self.tap
        assert tap is not None
        self._poll()
        stats = self.stats
        k = stats.steps + 1  # this step's number, from 1
        captured = tap.captures > self._captures_seen
        self._captures_seen = tap.captures
        if tap.skipped and not captured and not self._warned_skip:  # (an outer call may not fit)
            self._warned_skip = True
            self.say(
                f"glnet: note: the probe {tuple(self.probe.shape[1:])} does not fit the model's training "
                "input (first positional argument, same per-sample shape): nothing is captured"
            )
        if samples is None and captured and tap.batch:
            samples = tap.batch - 1
        if samples:
            stats.batch = stats.batch or int(samples)
            stats.samples += int(samples)
        note = ""
        layer = None
        bad = loss is not None and not math.isfinite(float(loss))
        if bad:
            layer = nonfinite_layer or (tap.first_nonfinite() if captured else None)
            where = (
                f"first non-finite values in layer {layer!r}" if layer else "no captured layer holds NaN/Inf"
            )
            note = f"loss {float(loss)} at step {k}: {where}"
            stats.nonfinite.append({"step": k, "loss": str(float(loss)), "layer": layer})
            self.note = note
        if loss is not None:
            stats.loss.append(float(loss))
        if acc is not None:
            stats.acc.append(float(acc))
        if captured and self._viewer_alive and not self.paused:
            src, shown = self._source()
            if src is not None:
                self._hand_over(src, FrameMeta(k, shown, None if loss is None else float(loss), acc, note))
            self._send_panels(t0)
        stats.steps = k
        now = time.perf_counter()
        start = self._last_step_end if self._last_step_end is not None else (self._first_forward or t0)
        stats.step_ms.append((now - start) * 1e3)
        hook_s = tap.seconds - self._tap_seconds_seen
        self._tap_seconds_seen = tap.seconds
        stats.glnet_ms.append((now - t0 + hook_s) * 1e3)
        self._last_step_end = now
        if samples:
            self._samples_window.append((now, int(samples)))
        tap.grads = self._mode == "gradients"
        tap.armed = not self.paused and k % self.every == 0 and self._viewer_alive
        if bad and not self.keep_going:
            raise NonFiniteError(f"training stopped: {note}", layer=layer, step=k)

    # -- shutting down ------------------------------------------------------------------------------------
    def _end_viewer(self) -> None:
        """Let the viewer draw what is queued and close its video; a Ctrl-C meanwhile ends it at once."""
        v = self._viewer
        if v is None:
            return
        try:
            v.finish(self.stop_reason, self._on_message)
        finally:
            v.close(self._on_message)
            if self._wall is not None:
                self._wall.close(self.stats)
            self._viewer_alive = False
            s = self.stats
            if s.viewer == "running":
                s.viewer = "finished" if v.exitcode == 0 else exit_reason(v.exitcode)
                s.viewer_exitcode = v.exitcode

    def close(self) -> None:
        """Let the viewer draw what is queued and close its video, end it, remove every hook; idempotent."""
        if self._closed or not self._started:
            return
        self._closed = True
        self.finished = True
        try:
            self._end_viewer()
        finally:
            if self.tap is not None:
                self.tap.remove()
            self.stats.grad_norms = self.grad_norms()

    def grad_norms(self) -> dict[str, float | str | None] | None:
        """The last handed-over step's weight-gradient norm of each drawn layer (None: no gradient; "nan" or
        "inf" where not finite), or None before the first; one host sync."""
        if self._grad_norms is None or self.trace is None:
            return None
        values = self._grad_norms.tolist()
        names = [r.name for r in self.trace.layers]
        return {n: None if v == NO_GRAD else json_number(v) for n, v in zip(names, values, strict=True)}


def live(model: nn.Module, probe: torch.Tensor, **options: Any) -> Live:
    """Draw ``model`` live while your loop trains it: ``with glnet.live(model, x) as v: ... v.step(loss)``.

    ``probe`` is the one sample the cloud shows (with or without its batch dimension). Options (see
    :class:`Live`): ``target`` (the probe's label, for its gradients), ``every`` (draw every K steps),
    ``mode``, ``headless`` (default: no display), ``record`` (a video with one frame per drawn step),
    ``size``, ``fps``, ``renderer``, ``camera``, ``keep_going``, ``queue_mb``, ``update_path``, ``hold``
    (keep the window open after the loop until it is closed), ``on_close`` (``"continue"`` or ``"stop"``
    training when the window is closed or the viewer fails), ``tensorboard`` (a ``SummaryWriter``: each drawn
    frame is added to it as an image), ``hud`` (False: the picture only), ``wall`` (``"CxR:WxH[:X,Y]"``, a
    headless wall, a process per tile: :mod:`glnet.live.wall`). On a rank other than 0 it is an idle session.
    """
    from .ranks import IdleLive, global_rank

    return (IdleLive if global_rank() != 0 else Live)(model, probe, **options)
