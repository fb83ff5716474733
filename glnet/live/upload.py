"""How a staged frame gets into the cloud's GL buffers, in the viewer process (its GL context current).

* CPU slots (shared memory): copied into a persistent-mapped GL staging buffer and from there, on the GPU
  side, into the values buffer (``host upload (persistent-mapped staging)``); where mapping fails, straight
  from the slot with ``glNamedBufferSubData`` (``host upload (buffer sub-data)``).
* CUDA slots (CUDA IPC): device to device through CUDA-OpenGL interop on a stream of the viewer's that waits
  for the trainer's copy event (``cuda-gl interop``): no activation byte goes through the host. Without
  interop, through pinned host memory (``host upload (pinned staging)``, counted in ``bytes_device_to_host``).

Display ranges and channel means are computed on the slot's device; only the range table comes to the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..colormap import ValueRange
from ..errors import CudaInteropUnavailable, MappingError, OutOfMemoryError
from ..gpu.cloud import BYTES_PER_NEURON, NeuronCloud
from .handover import (
    PATH_INTEROP,
    PATH_MAPPED,
    PATH_PINNED,
    PATH_SUBDATA,
    UPDATE_PATHS,
    Slots,
    check_update_path,
)
from .ranges import ChannelMeans, RangeTable, copy_plan

__all__ = [
    "PATH_INTEROP",
    "PATH_MAPPED",
    "PATH_PINNED",
    "PATH_SUBDATA",
    "UPDATE_PATHS",
    "Upload",
    "check_update_path",
    "choose_upload",
]


class Upload:
    """Moves slot ``i``'s frame into the cloud (values, channel means, ranges); knows when it is free."""

    name = ""

    def __init__(
        self, cloud: NeuronCloud, slots: Slots, offsets: Sequence[int], counts: Sequence[int]
    ) -> None:
        self.cloud = cloud
        self.slots = slots
        self.copies = copy_plan(offsets, cloud)
        self.table = RangeTable(counts, offsets, slots.device)
        self.means = ChannelMeans(offsets, counts, cloud)
        self.bytes_device_to_host = 0  # activation bytes that went device -> host on the way to GL
        self.range_bytes_to_host = 0  # the range numbers read back from the device
        self.last_mode: str | None = None
        self._done: list[int] = []  # slots whose data is no longer needed

    def present(self, i: int, mode: str = "activations") -> list[ValueRange]:
        """Copy slot ``i`` into the cloud and apply its display ranges; returns them."""
        if mode != self.last_mode:
            self.table.reset()
            self.last_mode = mode
        ranges = self._present(i)
        self.cloud.apply_ranges(ranges)
        return ranges

    def _measure(self, flat: torch.Tensor) -> tuple[list[ValueRange], torch.Tensor]:
        m = self.table.measure(flat)
        if m.is_cuda:
            self.range_bytes_to_host += m.numel() * m.element_size()
        return self.table.ranges(m.cpu().numpy()), self.means(flat)

    def _present(self, i: int) -> list[ValueRange]:
        raise NotImplementedError

    def reclaim(self) -> list[int]:
        """Slots whose copy into GL has finished: they go back to the trainer."""
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        """Release what this path holds in GL/CUDA (context current); idempotent."""


class SubDataUpload(Upload):
    """From host memory with glNamedBufferSubData, which has copied the bytes when it returns."""

    name = PATH_SUBDATA

    def _write_host(self, flat: torch.Tensor, means: torch.Tensor) -> None:
        data = flat.numpy().view(np.uint8)
        for s, d, n in self.copies:
            self.cloud.values.write(data[s : s + n], d)
        self.cloud.aggregates.write(means.numpy())

    def _present(self, i: int) -> list[ValueRange]:
        flat = self.slots.data[i]
        ranges, means = self._measure(flat)
        self._write_host(flat, means)
        self._done.append(i)
        return ranges


class MappedUpload(Upload):
    """Through two regions of a persistent, coherently mapped staging buffer: a memcpy from the slot (which is
    then free again), a GPU-side copy into the values buffer, and a fence before the region is reused."""

    name = PATH_MAPPED
    REGIONS = 2

    def __init__(self, *args: Any) -> None:
        from ..gpu.buffer import MappedBuffer

        super().__init__(*args)
        n = self.slots.nbytes
        self.staging = MappedBuffer(self.cloud.ctx, n * self.REGIONS, label="live staging")
        self._regions = [self.staging.array[k * n : (k + 1) * n] for k in range(self.REGIONS)]
        self._fences: list[Any] = [None] * self.REGIONS
        self._next = 0

    def _present(self, i: int) -> list[ValueRange]:
        from ..gpu.sync import Fence

        k, self._next = self._next, (self._next + 1) % self.REGIONS
        fence = self._fences[k]
        if fence is not None:  # the GPU is still copying out of this region (two frames ago): wait for it
            fence.wait(5.0)
            fence.delete()
            self._fences[k] = None
        flat = self.slots.data[i]
        ranges, means = self._measure(flat)
        np.copyto(self._regions[k], flat.numpy().view(np.uint8))
        self._done.append(i)
        base = k * self.slots.nbytes
        for s, d, n in self.copies:
            self.staging.copy_to(self.cloud.values, base + s, d, n)
        self.cloud.aggregates.write(means.numpy())
        self._fences[k] = Fence(self.cloud.ctx)
        return ranges

    def close(self) -> None:
        for f in self._fences:
            if f is not None:
                f.delete()
        self._fences = [None] * self.REGIONS
        self._regions = []
        self.staging.delete()


class PinnedUpload(SubDataUpload):
    """CUDA slots without interop: through pinned host memory (device -> host -> GL)."""

    name = PATH_PINNED

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        dev = self.slots.device
        self._host = torch.zeros(self.slots.floats, dtype=torch.float32, pin_memory=True)
        self._stream = torch.cuda.Stream(device=dev)

    def _present(self, i: int) -> list[ValueRange]:
        events = self.slots.events
        with torch.cuda.stream(self._stream):
            if events is not None:
                self._stream.wait_event(events[i])
            self._host.copy_(self.slots.data[i], non_blocking=True)
            self._stream.synchronize()
        self._done.append(i)
        self.bytes_device_to_host += self.slots.nbytes
        ranges, means = self._measure(self._host)
        self._write_host(self._host, means)
        return ranges


class InteropUpload(Upload):
    """CUDA slots copied device to device into GL (CUDA-GL interop) on the viewer's own stream, which waits on
    the GPU for the trainer's copy event; a slot is free once the viewer's copy event has completed.

    ``cuda`` is ``torch.cuda`` (tests hand in a fake): only ``Stream``, ``Event`` and ``stream()`` are used.
    """

    name = PATH_INTEROP

    def __init__(self, *args: Any, cuda: Any = None) -> None:
        from ..gpu.interop import CudaGLBuffer

        super().__init__(*args)
        self._cuda = cuda if cuda is not None else torch.cuda
        cloud = self.cloud
        self._values_gl = CudaGLBuffer(cloud.values.glo, cloud.values.nbytes, label="live values")
        try:
            self._agg_gl = CudaGLBuffer(cloud.aggregates.glo, cloud.aggregates.nbytes, label="live means")
        except BaseException:
            self._values_gl.close()
            raise
        self._stream = self._cuda.Stream(device=self.slots.device)
        self._pending: list[tuple[int, Any, torch.Tensor]] = []

    def _present(self, i: int) -> list[ValueRange]:
        flat = self.slots.data[i]
        events = self.slots.events
        with self._cuda.stream(self._stream):
            if events is not None:
                self._stream.wait_event(events[i])
            ranges, means = self._measure(flat)
            f = BYTES_PER_NEURON
            self._values_gl.write_many([(flat[s // f : (s + n) // f], d) for s, d, n in self.copies])
            self._agg_gl.write(means)
            done = self._cuda.Event()
            done.record(self._stream)
        self._pending.append((i, done, means))  # keeps ``means`` alive until the copy has run
        return ranges

    def reclaim(self) -> list[int]:
        keep = []
        for i, done, means in self._pending:
            if done.query():
                self._done.append(i)
            else:
                keep.append((i, done, means))
        self._pending = keep
        return super().reclaim()

    def close(self) -> None:
        for buf in (getattr(self, "_values_gl", None), getattr(self, "_agg_gl", None)):
            if buf is not None and not buf.closed:
                buf.close()


def choose_upload(
    cloud: NeuronCloud,
    slots: Slots,
    offsets: Sequence[int],
    counts: Sequence[int],
    prefer: str = "auto",
) -> tuple[Upload, str]:
    """The fastest path this context and device allow, and why a faster one was not taken ('' if none was)."""
    check_update_path(prefer, slots.device)
    args = (cloud, slots, offsets, counts)
    why = ""
    if slots.device.type == "cuda":
        if prefer in ("auto", "interop"):
            from ..gpu.interop import interop_status

            ok, why = interop_status()
            if ok:
                try:
                    with torch.cuda.device(slots.device):  # register on the model's GPU
                        return InteropUpload(*args), ""
                except CudaInteropUnavailable as e:
                    why = str(e)
            if prefer == "interop":
                raise CudaInteropUnavailable(f"cuda-gl interop was asked for but is unavailable: {why}")
            why = f"cuda-gl interop unavailable: {why}"
        return PinnedUpload(*args), why
    if prefer in ("auto", "mapped"):
        try:
            return MappedUpload(*args), ""
        except (MappingError, OutOfMemoryError) as e:
            why = str(e)
    return SubDataUpload(*args), why
