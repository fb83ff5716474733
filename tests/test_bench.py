"""``glnet bench``: exact synthetic clouds, bad input, a tiny run of all renderers, the JSON schema, CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from glnet.bench import (
    BENCH_SCHEMA,
    MARKERS,
    RENDERERS,
    SCHEMA_VERSION,
    BenchResult,
    BenchSchemaError,
    parse_points,
    parse_renderers,
    run_bench,
    synthetic_grids,
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


@pytest.mark.gl
def test_tiny_run_measures_every_renderer_and_validates(gl, tiny):
    doc = tiny.to_dict()
    validate(doc)
    validate(doc, builtin=True)
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
def test_markers_draw_the_same_picture(gl, tiny):
    """Same camera, sizes and colours: VisPy covers the pixels glnet covers, in the same colours."""
    imgs = {c.renderer: np.asarray(Image.open(c.image)).astype(int) for c in tiny.cases}
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
        broken(lambda d: d["cases"][0].pop("frame_ms_p50")),
        broken(lambda d: d.update(schema_version=2)),
        broken(lambda d: d["cases"][0].update(points=-1)),
        broken(lambda d: d["cases"][0].update(renderer="opengl")),
        broken(lambda d: d["cases"][0].update(frame_ms_p95="fast")),
        broken(lambda d: d["cases"][0].update(extra=1)),
        broken(lambda d: d.pop("machine")),
        broken(lambda d: d["settings"].update(renderers=[])),
    ]
    for doc in bad:
        for builtin in (False, True):
            with pytest.raises(BenchSchemaError):
                validate(doc, builtin=builtin)


def test_builtin_validator_refuses_keywords_it_does_not_know():
    with pytest.raises(NotImplementedError):
        validate({}, schema={"type": "object", "patternProperties": {}}, builtin=True)
    assert BENCH_SCHEMA["properties"]["schema_version"] == {"const": 1}


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
    assert {c["renderer"] for c in doc["cases"]} == set(RENDERERS)
    png = out.with_suffix(".png")
    assert png.is_file() and Image.open(png).size[0] > 300
    assert "vs Markers" in stdout and "1.0x" in stdout
    assert "compute is " in stdout and "x VisPy Markers at 20,000 points" in stdout
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
