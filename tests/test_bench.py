"""``glnet bench``: exact synthetic clouds, bad input, a tiny run of all renderers, the JSON schema, CLI."""

from __future__ import annotations

import ast
import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from PIL import Image

import glnet.bench.peers.vispy_markers as vispy_markers
from glnet.bench import (
    BENCH_SCHEMA,
    MARKERS,
    MIN_TIMED_FRAMES,
    RENDERERS,
    SCHEMA_VERSION,
    BenchResult,
    BenchSchemaError,
    Timing,
    make_case,
    parse_points,
    parse_renderers,
    run_bench,
    synthetic_grids,
    synthetic_workload,
    time_frames,
    validate,
)
from glnet.cli import main
from glnet.errors import InputError

TINY = {"points": [20000], "size": (160, 90), "frames": 2, "warmup": 1}


@pytest.mark.parametrize("n", [1, 3135, 3137, 20000, 1_000_000, 2_182_657])
def test_synthetic_grids_hold_exactly_n_neurons(n):
    grids = synthetic_grids(n)
    assert sum(c * h * w for _, (c, h, w) in grids) == n
    assert all(min(g) >= 1 for _, g in grids)
    assert [name for name, _ in grids[:-1]] == list(dict.fromkeys(name for name, _ in grids[:-1]))
    if n >= 200704:  # starts like a convnet stage: 64 maps of 56x56
        assert grids[0][1] == (64, 56, 56)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e6,5e6", [1_000_000, 5_000_000]),
        ("500k, 2M", [500_000, 2_000_000]),
        ("20000", [20000]),
        ("2e9", [2 * 10**9]),
    ],
)
def test_parse_points(text, expected):
    assert parse_points(text) == expected


@pytest.mark.parametrize("text", ["abc", "0", "-5", "3e9", "1.5", "1e6,", "", "nan", "inf", "1e6;2e6"])
def test_parse_points_rejects(text):
    with pytest.raises(InputError):
        parse_points(text)


def test_parse_renderers():
    assert parse_renderers("compute, vispy-markers,compute") == ["compute", MARKERS]
    with pytest.raises(InputError, match="unknown renderer 'opengl'"):
        parse_renderers("compute,opengl")


@pytest.fixture(scope="module")
def tiny(gl_ctx, tmp_path_factory):
    """One small run of all three renderers, with each case's last frame saved."""
    images = tmp_path_factory.mktemp("bench-images")
    return run_bench(**TINY, renderers=RENDERERS, ctx=gl_ctx, images=images)


@pytest.fixture(scope="module")
def discs(gl_ctx, tmp_path_factory):
    """A run whose neurons are discs a few pixels wide (not the 1-pixel dots of ``tiny``), one frame each."""
    images = tmp_path_factory.mktemp("bench-discs")
    return run_bench([3600], size=(480, 270), frames=1, warmup=0, ctx=gl_ctx, images=images)


@pytest.mark.gl
def test_tiny_run_measures_every_renderer_and_validates(gl, tiny):
    doc = tiny.to_dict()
    validate(doc)
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    assert doc["machine"]["gl_renderer"] and doc["machine"]["cpu_cores"] >= 1
    cases = {c["renderer"]: c for c in doc["cases"]}
    assert set(cases) == set(RENDERERS) and not doc["skipped"]
    for c in cases.values():
        assert (c["points"], c["width"], c["height"], c["frames"]) == (20000, 160, 90, 2)
        assert 0 < c["frame_ms_p50"] <= c["frame_ms_p95"]
        assert c["points_per_s"] == pytest.approx(20000 / (c["frame_ms_p50"] / 1e3), rel=1e-3)
        assert c["ratio_vs_markers"] == pytest.approx(
            cases[MARKERS]["frame_ms_p50"] / c["frame_ms_p50"], rel=1e-2
        )
    # glnet keeps 4 bytes a neuron (plus small tables); VisPy's interleaved record is ~52-56 bytes
    assert 4.0 <= cases["compute"]["bytes_per_point"] == cases["instanced"]["bytes_per_point"] < 5.0
    assert cases[MARKERS]["bytes_per_point"] >= 40
    assert cases["compute"]["frame_bytes"] > cases["instanced"]["frame_bytes"]  # + the per-pixel key buffer
    assert json.loads(tiny.to_json()) == doc
    assert BenchResult.from_dict(json.loads(tiny.to_json())).to_dict() == doc


@pytest.mark.gl
@pytest.mark.parametrize("run", ["tiny", "discs"])
def test_markers_draw_the_same_picture(gl, run, request):
    """Same camera, sizes and colours: VisPy covers the pixels glnet covers, in the same colours."""
    result = request.getfixturevalue(run)
    imgs = {c.renderer: np.asarray(Image.open(c.image)).astype(int) for c in result.cases}
    bg = imgs["compute"][0, 0]
    drawn = {k: np.abs(v - bg).sum(axis=-1) > 6 for k, v in imgs.items()}
    ours, theirs = drawn["compute"], drawn[MARKERS]
    assert ours.mean() > 0.02, "the cloud should cover part of the frame"
    assert (ours ^ theirs).sum() <= 0.1 * ours.sum()
    assert (drawn["instanced"] ^ ours).sum() <= 0.1 * ours.sum()
    both = ours & theirs
    assert np.abs(imgs["compute"][both].mean(0) - imgs[MARKERS][both].mean(0)).max() < 12


@pytest.mark.gl
def test_broken_documents_fail_validation(tiny):
    good = tiny.to_dict()

    def broken(edit):
        doc = copy.deepcopy(good)
        edit(doc)
        return doc

    bad = [
        (broken(lambda d: d["cases"][0].pop("frame_ms_p50")), "$.cases[0]"),
        (broken(lambda d: d.update(schema_version=2)), "$.schema_version"),
        (broken(lambda d: d["cases"][0].update(points=-1)), "$.cases[0].points"),
        (broken(lambda d: d["cases"][0].update(renderer="opengl")), "$.cases[0].renderer"),
        (broken(lambda d: d["cases"][0].update(frame_ms_p95="fast")), "$.cases[0].frame_ms_p95"),
        (broken(lambda d: d["cases"][0].update(frame_ms_p95=math.nan)), "$.cases[0].frame_ms_p95"),
        (broken(lambda d: d["cases"][0].update(upload_gb_s=math.inf)), "$.cases[0].upload_gb_s"),
        (broken(lambda d: d["cases"][0].update(extra=1)), "$.cases[0]"),
        (broken(lambda d: d.pop("machine")), "$"),
        (broken(lambda d: d["settings"].update(renderers=[])), "$.settings.renderers"),
    ]
    for doc, where in bad:
        with pytest.raises(BenchSchemaError, match=r"^" + re.escape(where + ":")) as e:
            validate(doc)
        assert "\n" not in str(e.value)
        with pytest.raises(BenchSchemaError):
            BenchResult.from_dict(doc)
    validate(good)


def test_schema_is_valid_draft_2020_12():
    Draft202012Validator.check_schema(BENCH_SCHEMA)
    assert BENCH_SCHEMA["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    assert BENCH_SCHEMA["properties"]["cases"]["items"]["properties"]["renderer"] == {"enum": list(RENDERERS)}


def test_time_frames_runs_warmup_then_timed_frames_and_obeys_the_budget():
    calls = []
    timing = time_frames(lambda: calls.append(1), frames=5, warmup=2, budget_s=1e6)
    assert (len(calls), len(timing.times_ms), timing.warmup, timing.budget_stopped) == (7, 5, 2, False)
    calls.clear()
    timing = time_frames(lambda: calls.append(1), frames=10, warmup=4, budget_s=1e-12)
    assert timing.warmup == 1, "no more warm-up once half the budget is gone"
    assert len(timing.times_ms) == MIN_TIMED_FRAMES and timing.budget_stopped
    assert len(calls) == 1 + MIN_TIMED_FRAMES


def test_make_case_percentiles_and_rates():
    work = synthetic_workload(1000)
    timing = Timing([4.0, 2.0, 3.0, 10.0, 1.0], warmup=1, budget_stopped=False)
    c = make_case(
        "compute",
        work,
        (160, 90),
        timing,
        gpu_bytes=4000,
        frame_bytes=160 * 90 * 8,
        upload_bytes=2000,
        upload_ms=0.5,
        image=None,
    )
    assert (c.frame_ms_p50, c.frame_ms_min, c.frame_ms_mean) == (3.0, 1.0, 4.0)
    assert c.frame_ms_p95 == pytest.approx(np.percentile([1, 2, 3, 4, 10], 95))
    assert c.points_per_s == pytest.approx(1000 / 3e-3)
    assert (c.bytes_per_point, c.upload_gb_s, c.frames, c.layers) == (4.0, 0.004, 5, len(work.layout.slabs))


def test_markers_peer_uses_no_private_vispy_names():
    """The peer may reach its own ``self._x`` but nothing underscored of VisPy's."""
    tree = ast.parse(Path(vispy_markers.__file__).read_text(encoding="utf-8"))
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert private == []


def _printed_table(stdout: str) -> dict[str, list[str]]:
    """The rows of the table ``glnet bench`` printed, keyed by renderer (the cells hold no spaces)."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("workload"))
    assert set(lines[head + 1]) <= {"-", " "}
    rows = {}
    for line in lines[head + 2 :]:
        cells = line.split()
        if len(cells) != 11:
            break
        rows[cells[1]] = cells
    return rows


@pytest.mark.gl
def test_cli_bench_writes_json_plot_and_ratio_table(tmp_path, capsys, gl_ctx):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "--points",
            "20000",
            "--size",
            "160x90",
            "--frames",
            "2",
            "--warmup",
            "1",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    stdout = capsys.readouterr().out
    doc = json.loads(out.read_text())
    validate(doc)
    cases = {c["renderer"]: c for c in doc["cases"]}
    assert set(cases) == set(RENDERERS)
    png = out.with_suffix(".png")
    assert png.is_file() and Image.open(png).size[0] > 300
    assert "vs Markers" in stdout
    rows = _printed_table(stdout)
    assert set(rows) == set(RENDERERS)
    base = cases[MARKERS]["frame_ms_p50"]
    for name, cells in rows.items():
        c = cases[name]
        assert cells[0] == "synthetic-20000" and cells[2] == "20,000" and cells[3] == "160x90"
        assert cells[5] == f"{c['frame_ms_p50']:.1f}" and cells[6] == f"{c['frame_ms_p95']:.1f}"
        assert cells[10].endswith("x")
        printed = float(cells[10][:-1])
        assert printed == pytest.approx(base / c["frame_ms_p50"], abs=0.05 + 1e-3), name
    assert rows[MARKERS][10] == "1.0x"
    for name in ("instanced", "compute"):
        line = next(x for x in stdout.splitlines() if x.startswith(f"{name} is "))
        ratio = cases[name]["ratio_vs_markers"]
        assert line == f"{name} is {ratio:.1f}x VisPy Markers at 20,000 points (synthetic-20000)"
        assert rows[name][10] == f"{ratio:.1f}x"
    gl_ctx.make_current()


@pytest.mark.parametrize(
    "args",
    [
        ["--points", "abc"],
        ["--points", "0"],
        ["--points", "3e9"],
        ["--renderers", "compute,opengl"],
        ["--size", "160"],
        ["--size", "0x90"],
        ["--frames", "0"],
        ["--json", "b.json", "--plot", "b.svg"],
    ],
)
def test_cli_bench_bad_arguments_exit_2_with_one_line(args, capsys):
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("glnet: error: ") and "\n" not in err
