"""The hand-over between the trainer and the viewer process: staging slots both processes see, and the
bookkeeping of which slot is whose.

On CPU the slots are one shared-memory tensor (``Tensor.share_memory_()``); on CUDA they are one device tensor
shared through CUDA IPC, with one interprocess ``torch.cuda.Event`` a slot that the trainer records after its
copy and the viewer's stream waits on (on the GPU: neither side blocks). The trainer owns the slots for the
whole session, as torch's notes on sharing CUDA tensors require. A slot goes trainer -> (message "frame") ->
viewer -> (message "released") -> trainer; the trainer never waits for one: with none free, the frame is
dropped.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import CudaInteropUnavailable, InputError
from ..gpu.cloud import BYTES_PER_NEURON

__all__ = [
    "NO_GRAD",
    "PATH_INTEROP",
    "PATH_MAPPED",
    "PATH_PINNED",
    "PATH_SUBDATA",
    "POLICIES",
    "TOP_K",
    "UPDATE_PATHS",
    "FrameMeta",
    "Handover",
    "PanelWeights",
    "Slots",
    "check_update_path",
    "slot_count",
]

POLICIES = ("latest", "queue")
PATH_INTEROP = "cuda-gl interop"
PATH_MAPPED = "host upload (persistent-mapped staging)"
PATH_PINNED = "host upload (pinned staging)"
PATH_SUBDATA = "host upload (buffer sub-data)"
UPDATE_PATHS = ("auto", "interop", "mapped", "host")  # what update_path= may ask for; the viewer chooses
_SHM = "/dev/shm"
NO_GRAD = -1.0  # a layer's gradient norm in a slot's side numbers when it has no weight gradient
TOP_K = 5  # after the norms, a slot's side numbers hold the probe's top classes: K indices, K probabilities


@dataclass
class FrameMeta:
    """What one staged frame shows and the numbers the HUD prints with it (pickled to the viewer)."""

    step: int
    mode: str = "activations"
    loss: float | None = None
    acc: float | None = None
    note: str = ""
    t: float = 0.0  # perf_counter when it was handed over
    samples_per_s: float | None = None
    losses: list[float] = field(default_factory=list)  # every loss since the previous message, for curves
    accs: list[float] = field(default_factory=list)


def check_update_path(prefer: str, device: torch.device) -> None:
    """Refuse an update path that cannot work with the model on ``device`` (trainer side, before any GL)."""
    if prefer not in UPDATE_PATHS:
        raise InputError(f"update path must be {', '.join(UPDATE_PATHS)}, not {prefer!r}")
    if prefer == "interop" and device.type != "cuda":
        raise CudaInteropUnavailable("cuda-gl interop needs the model on a CUDA device")


def _shm_free_bytes() -> int | None:
    try:
        st = os.statvfs(_SHM)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def slot_count(policy: str, nbytes: int, queue_mb: float, device: torch.device) -> int:
    """How many slots: 3 for ``latest`` (one written, one waiting, one read); for ``queue`` as many as
    ``queue_mb`` holds, never more than half of the free shared memory (past it, a write would fault)."""
    if policy == "latest":
        return 3
    n = int(min(4096, max(3, (queue_mb * 2**20) // max(1, nbytes))))
    free = _shm_free_bytes() if device.type == "cpu" else None
    if free is not None:
        n = max(3, min(n, int(free // 2 // max(1, nbytes))))
    return n


class Slots:
    """``n`` staging slots of ``floats`` float32 values each, in memory the viewer process can map, and
    ``side`` more numbers a slot beside them (each drawn layer's weight-gradient norm, :data:`NO_GRAD` where
    it has none), written with the same copy event."""

    def __init__(self, n: int, floats: int, device: torch.device, side: int = 0) -> None:
        self.n, self.floats, self.device = int(n), int(floats), torch.device(device)
        if self.device.type == "cuda":
            self.data = torch.zeros(self.n, self.floats, dtype=torch.float32, device=self.device)
            self.side = torch.full((self.n, int(side)), NO_GRAD, dtype=torch.float32, device=self.device)
            with torch.cuda.device(self.device):
                self.events: list[Any] | None = [torch.cuda.Event(interprocess=True) for _ in range(self.n)]
        else:
            self.data = torch.zeros(self.n, self.floats, dtype=torch.float32).share_memory_()
            self.side = torch.full((self.n, int(side)), NO_GRAD, dtype=torch.float32).share_memory_()
            self.events = None

    @property
    def nbytes(self) -> int:
        return self.floats * BYTES_PER_NEURON

    def write(self, i: int, src: torch.Tensor, side: torch.Tensor | None = None) -> None:
        """Copy a packed frame (and its side numbers) into slot ``i`` (trainer side; on CUDA asynchronous,
        then the slot's event)."""
        if self.events is not None:
            self.data[i].copy_(src, non_blocking=True)
            if side is not None:
                self.side[i].copy_(side, non_blocking=True)
            self.events[i].record(torch.cuda.current_stream(self.device))
        else:
            self.data[i].copy_(src)
            if side is not None:
                self.side[i].copy_(side)


class PanelWeights:
    """The weights of the layers drawn as panels, in one buffer both processes see (shared memory, or CUDA IPC
    with an interprocess event): the trainer refreshes it now and then, the viewer reads it on a message."""

    def __init__(self, weights: dict[int, torch.Tensor], device: torch.device) -> None:
        self.device = torch.device(device)
        self.plan: list[tuple[int, tuple[int, ...], int, int]] = []
        off = 0
        for i, w in weights.items():
            self.plan.append((i, tuple(w.shape), off, w.numel()))
            off += w.numel()
        if self.device.type == "cuda":
            self.data = torch.zeros(off, dtype=torch.float32, device=self.device)
            with torch.cuda.device(self.device):
                self.event: Any = torch.cuda.Event(interprocess=True)
        else:
            self.data = torch.zeros(off, dtype=torch.float32).share_memory_()
            self.event = None

    def write(self, weights: dict[int, torch.Tensor]) -> None:
        """Copy the current weights in (trainer side; on CUDA asynchronous, then the event)."""
        with torch.no_grad():
            for i, _shape, off, n in self.plan:
                self.data[off : off + n].copy_(weights[i].detach().reshape(-1), non_blocking=True)
        if self.event is not None:
            self.event.record(torch.cuda.current_stream(self.device))

    def read(self) -> dict[int, torch.Tensor]:
        """Each layer's weights as a view of the buffer (viewer side, after the trainer's copy has landed)."""
        if self.event is not None:
            self.event.synchronize()
        return {i: self.data[off : off + n].view(shape) for i, shape, off, n in self.plan}


class Handover:
    """The trainer's side of the slots: which are free, and the frames it handed over and dropped.

    ``policy="latest"``: the viewer draws only the newest frame it has (older ones come back undrawn);
    ``policy="queue"``: it draws every frame in order. Either way a frame with no free slot is dropped here.
    """

    def __init__(self, slots: Slots, policy: str = "latest") -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be 'latest' or 'queue', not {policy!r}")
        self.slots = slots
        self.policy = policy
        self.free: collections.deque[int] = collections.deque(range(slots.n))
        self.published = 0
        self.dropped = 0  # no free slot when the trainer had a frame
        self.last: int | None = None  # the slot of the newest frame handed over

    def acquire(self) -> int | None:
        """A free slot for the next frame, or None (the frame is dropped and counted); never blocks."""
        if not self.free:
            self.dropped += 1
            return None
        return self.free.popleft()

    def commit(self, i: int) -> None:
        """Slot ``i`` holds a new frame and goes to the viewer."""
        self.published += 1
        self.last = i

    def release(self, i: int) -> None:
        """Slot ``i`` came back from the viewer."""
        if 0 <= i < self.slots.n and i not in self.free:
            self.free.append(i)

    @property
    def in_flight(self) -> int:
        """Slots the viewer holds (handed over, not yet back)."""
        return self.slots.n - len(self.free)
