"""Live training: the point cloud follows a model while it trains, one fixed *probe* sample at a time.

Every training step the cloud shows the probe's activations (or, on demand, their gradients or how far each
filter has moved since the start), so frame-to-frame change is learning, not a new image. The modules follow
one step from the trainer to the screen:

* :mod:`~glnet.live.tap` (trainer): persistent hooks copy the probe's row of every drawn layer into one flat
  tensor laid out like the GL values buffer. The probe rides along as one extra row of the training batch.
* :mod:`~glnet.live.handover` (both): staging slots in shared memory (CPU) or CUDA IPC memory with
  interprocess events (CUDA); :meth:`Live.step` copies the flat tensor into a free slot and returns. It never
  waits: without ``record`` the newest frame wins; with it every step's frame waits in a bounded queue.
* :mod:`~glnet.live.session` (trainer): :class:`Live`, which starts the viewer and watches it
  (:mod:`~glnet.live.process`); :mod:`~glnet.live.stats` holds its counters; :mod:`~glnet.live.ranks`: in a
  distributed run only rank 0 draws (the others get an idle session with the same API).
* :mod:`~glnet.live.viewer` (viewer process): the window (or headless recorder) on its own main thread, with
  :mod:`~glnet.live.view` (the scene, HUD and curves), :mod:`~glnet.live.upload` (slot -> GL: CUDA-GL interop
  device to device, or host uploads) and :mod:`~glnet.live.ranges` (display ranges on the slot's device);
  with ``wall=`` it is rank 0 of a display wall whose other tiles are processes of their own
  (:mod:`~glnet.live.wall`).

If the window is closed or the viewer dies, training goes on (``on_close="continue"``) or stops after the step
(``"stop"``); the stats say which. Notes: BatchNorm in training mode sees the probe as one more sample of the
batch. The probe's gradients are those of its own loss (``target``, ``criterion``) injected into the backward
pass with the weight of one sample of a mean-reduced loss. Call :meth:`Live.step` after ``optimizer.step()``.

Example (your own training loop)::

    import torch
    import torch.nn.functional as F
    import torchvision

    import glnet
    from glnet.data import make_dataset, make_loader

    data = make_dataset("synthetic", 64)                 # coloured shapes in 10 classes, made on the fly
    probe, label = make_dataset("synthetic", 64, train=False)[0]   # the one sample the cloud shows
    model = torchvision.models.resnet18(num_classes=data.num_classes).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    with glnet.live(model, probe=probe, target=label, record="training.mp4") as viz:
        for step, (x, y) in enumerate(make_loader(data, batch_size=32)):
            out = model(x)                               # the probe rides along; out still has len(x) rows
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            viz.step(loss=loss.item(), acc=(out.argmax(1) == y).float().mean().item())
            if step == 200 or viz.should_stop:
                break
    print(viz.stats.summary())                           # steps, frames, losses, viewer, overhead

``viz.mode = "gradients"`` (or ``"weights"``) switches what the cloud shows from code; a non-finite loss
raises :class:`glnet.errors.NonFiniteError` naming the first layer holding NaN/Inf (``keep_going=True``
shows it and goes on). From the command line: ``glnet train resnet18 --data synthetic --steps 60``.
"""

from .handover import (
    PATH_INTEROP,
    PATH_MAPPED,
    PATH_PINNED,
    PATH_SUBDATA,
    UPDATE_PATHS,
    FrameMeta,
    Handover,
    Slots,
)
from .session import MODES, Live, live
from .stats import OVERHEAD_DEFINITION, LiveStats
from .tap import ProbeTap

__all__ = [
    "MODES",
    "OVERHEAD_DEFINITION",
    "PATH_INTEROP",
    "PATH_MAPPED",
    "PATH_PINNED",
    "PATH_SUBDATA",
    "UPDATE_PATHS",
    "FrameMeta",
    "Handover",
    "Live",
    "LiveStats",
    "ProbeTap",
    "Slots",
    "live",
]
