"""``glnet inspect`` and ``snapshot --pick``: everything the inspector shows about one neuron, printed and
as JSON, for scripts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["add_inspect_parser", "parse_pixel", "pick_json", "say_pick"]


def add_inspect_parser(
    sub: argparse._SubParsersAction,
    add_model_args: Callable[..., None],
    prepare: Callable[[argparse.Namespace], Any],
) -> None:
    """``glnet inspect``, with the model options and the model-to-trace step every command shares."""
    p = sub.add_parser(
        "inspect",
        help="explain one neuron: layer, value, distribution, kernel, receptive field, saliency, top-5",
        description="Print what the inspector shows for one neuron of MODEL (no window, no GL).",
    )
    add_model_args(p, drawing=False)
    p.add_argument(
        "--neuron",
        required=True,
        metavar="LAYER:C,Y,X",
        help="a layer's name or index, then its coordinates: C,Y,X for feature maps, T,C for tokens, I for "
        "vectors (e.g. layer3.0.conv2:5,7,7)",
    )
    p.add_argument(
        "--json", metavar="FILE", help="write everything as JSON (feature map and kernel included)"
    )
    p.add_argument(
        "--saliency", metavar="FILE.png", help="write the input with the saliency map and receptive field"
    )
    p.set_defaults(run=_cmd_inspect, prepare=prepare)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .app import input_rgb
    from .explain import inspect_neuron, parse_neuron
    from .explain.images import saliency_overlay
    from .explain.text import inspection_lines, prediction_lines

    if args.saliency and Path(args.saliency).suffix.lower() != ".png":
        raise InputError(f"--saliency must end in .png, not {Path(args.saliency).name!r}")
    prep = args.prepare(args)
    layer, index = parse_neuron(prep.trace, args.neuron)
    t0 = time.perf_counter()
    ins = inspect_neuron(
        prep.trace,
        layer,
        index,
        model=prep.spec.model,
        labels=args.labels,
        with_saliency=bool(args.saliency or args.json),
    )
    cost = time.perf_counter() - t0
    for line in inspection_lines(ins):
        print(line)
    if ins.predictions:
        print("top-5:")
        for line in prediction_lines(ins):
            print("  " + line)
    if args.saliency:
        rgb = input_rgb(prep.trace.input, prep.spec.mean, prep.spec.std)
        if rgb is None or ins.saliency is None:
            raise InputError("the model's input is not an image: there is no saliency map to draw")
        from PIL import Image

        out = Path(args.saliency)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(saliency_overlay(rgb, ins.saliency, ins.receptive_field)).save(out)
        _say(f"glnet: wrote {out}")
    if args.json:
        data = {"model": prep.spec.name, "inspect_s": round(cost, 4), **ins.as_dict()}
        p = Path(args.json)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        _say(f"glnet: wrote {p}")
    _say(f"glnet: inspected in {cost:.2f} s")
    return 0


def parse_pixel(text: str, size: tuple[int, int]) -> tuple[int, int]:
    """``--pick X,Y`` as a pixel inside a ``size`` image; one line of error otherwise."""
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--pick must be X,Y in pixels (e.g. 640,360), not {text!r}") from None
    if not (0 <= x < size[0] and 0 <= y < size[1]):
        raise InputError(f"--pick {x},{y} is outside the {size[0]}x{size[1]} image")
    return x, y


def pick_json(snap: Any) -> dict[str, Any] | None:
    """The stats' ``"pick"`` of a snapshot: where, which neuron and its values; None where none was hit."""
    ins = snap.inspection
    if snap.pick is None or ins is None:
        return None
    d = ins.as_dict()
    return {
        "pixel": list(snap.pick.pixel),
        "layer": ins.layer,
        "layer_index": ins.layer_index,
        "coords": list(ins.coords),
        "value": d["value"],
        "raw_value": d["raw_value"],
        "aggregate": snap.pick.aggregate,
        "receptive_field": d["receptive_field"],
    }


def say_pick(snap: Any, say: Callable[[str], None]) -> None:
    """One line on what ``--pick`` hit and what it cost."""
    ins = snap.inspection
    if ins is None:
        say(f"glnet: no neuron is drawn at pixel {snap.pick.pixel if snap.pick else ''}".rstrip())
        return
    coords = ",".join(str(c) for c in ins.coords)
    say(
        f"glnet: picked {ins.layer}:{coords} = {ins.value:.4g} (pick {snap.pick_ms:.1f} ms, "
        f"inspection with saliency {snap.inspect_ms:.0f} ms)"
    )
