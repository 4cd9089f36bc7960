"""explain(): its numbers against what the functions actually return; figure; CLI."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import convgrad
from convgrad import explain, functional, reference
from convgrad._primitive import correlate
from convgrad._runner import run
from convgrad.tools.explain_cli import parse_padding, parse_shape

# (input_shape, weight_shape, options)
CONV_CASES = [
    ((5, 100, 100), (10, 5, 5, 5), {}),  # the origin layer, unbatched
    ((2, 3, 11), (4, 3, 3), {"stride": 2}),
    ((2, 3, 10), (6, 1, 4), {"stride": 3, "padding": "same", "groups": 3, "dilation": 2}),
    ((1, 4, 9, 10), (6, 2, 3, 3), {"stride": 2, "padding": "same", "groups": 2}),
    ((2, 3, 8, 7), (2, 3, 2, 3), {"stride": (2, 1), "padding": ((1, 2), (0, 1))}),
    ((2, 2, 9, 9), (3, 2, 3, 3), {"dilation": (2, 1), "padding": (2, 1)}),
    ((1, 2, 7, 6), (2, 2, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ((2, 4, 6, 7), (4, 1, 3, 3), {"groups": 4, "padding": "valid", "stride": 3}),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), {"stride": (1, 2, 3), "padding": 1}),
    ((2, 4, 6, 5), (4, 2, 3, 2), {"groups": 2, "padding": "same", "padding_mode": "circular"}),
    ((2, 2, 6, 5), (3, 2, 3, 2), {"padding": "full", "stride": 2, "dilation": (2, 1)}),
]

TRANSPOSED_CASES = [
    ((2, 3, 7), (3, 2, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((1, 4, 5, 6), (4, 3, 3, 2), {"stride": (2, 3), "groups": 2, "dilation": (1, 2)}),
    ((2, 2, 3, 4, 3), (2, 1, 2, 2, 3), {"stride": 2, "padding": (0, 1, 1)}),
]


def _arrays(input_shape, weight_shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(input_shape), rng.standard_normal(weight_shape)


@pytest.mark.parametrize("input_shape, weight_shape, options", CONV_CASES)
def test_conv_numbers_match_the_functions(input_shape, weight_shape, options):
    report = explain(input_shape, weight_shape, **options)
    x, w = _arrays(input_shape, weight_shape)
    b = np.ones(weight_shape[0])
    y = convgrad.conv(x, w, b, **options)
    gy = np.random.default_rng(1).standard_normal(y.shape)
    dx, dw, db = convgrad.conv_backward(gy, x, w, b, **options)

    shapes = report.shapes
    assert shapes["input"] == x.shape == shapes["grad_input"] == dx.shape
    assert shapes["weight"] == w.shape == shapes["grad_weight"] == dw.shape
    assert shapes["output"] == y.shape == shapes["grad_output"]
    assert shapes["bias"] == shapes["grad_bias"] == db.shape
    assert report.passes["forward"].result_shape == y.shape
    assert report.passes["input_grad"].result_shape == dx.shape
    assert report.passes["weight_grad"].result_shape == dw.shape

    nd = w.ndim - 2
    kernel, groups = w.shape[2:], options.get("groups", 1)
    n = x.shape[0] if x.ndim == nd + 2 else 1
    c, k = x.shape[-nd - 1], w.shape[0]
    out_sp, in_sp = y.shape[-nd:], x.shape[-nd:]
    # resolved padding: the slow reference's own resolution, independent of ConvSpec
    stride = options.get("stride", 1)
    dilation = options.get("dilation", 1)
    stride = (stride,) * nd if isinstance(stride, int) else stride
    dilation = (dilation,) * nd if isinstance(dilation, int) else dilation
    pads = reference.resolve_padding(options.get("padding", 0), in_sp, kernel, stride, dilation)
    assert report.padding == tuple(tuple(p) for p in pads)
    # multiply-adds of the definition: every output element sums C/g * prod(k) products
    macs = y.size * (c // groups) * math.prod(kernel)
    assert report.macs["forward"] == report.macs["input_grad"] == report.macs["weight_grad"]
    assert report.macs["forward"] == macs and report.macs["total"] == 3 * macs
    # im2col GEMM shapes: G x [rows x depth] . [depth x cols]
    assert report.gemms["forward"] == (
        groups,
        k // groups,
        c // groups * math.prod(kernel),
        n * math.prod(out_sp),
    )
    g, rows, depth, cols = report.gemms["input_grad"]
    if options.get("padding_mode", "zeros") != "zeros":  # runs on the explicitly padded X
        in_sp = tuple(s + lo + hi for s, (lo, hi) in zip(in_sp, pads))
    assert (g * rows, depth, cols) == (c, k // groups * math.prod(kernel), n * math.prod(in_sp))
    if options.get("padding_mode", "zeros") == "zeros":
        assert report.passes["input_grad"].out_shape == (g, n, rows, *in_sp)
    g, rows, depth, cols = report.gemms["weight_grad"]
    assert (g * rows, depth, cols) == (k, n * math.prod(out_sp), c // groups * math.prod(kernel))
    assert report.passes["weight_grad"].out_shape == (g, c // g, k // g, *kernel)
    for p in report.passes.values():
        assert p.gemm_macs >= p.macs > 0
        assert p.workspace_bytes > 0 and p.algorithm in convgrad._primitive.algorithm_names()


def _expected(input_shape, weight_shape, options, transposed):
    """(arrays by argument name, each pass's result) from the slow reference alone."""
    x, w = _arrays(input_shape, weight_shape)
    if not transposed:
        y = reference.conv(x, w, None, **options)
        gy = np.random.default_rng(3).standard_normal(y.shape)
        dx, dw, _ = reference.conv_grads(x, w, gy, **options)
    else:  # dE/dX is the convolution of dE/dO with F; dE/dF its weight gradient at X
        y = reference.conv_transpose(x, w, None, **options)
        gy = np.random.default_rng(3).standard_normal(y.shape)
        conv_options = {k: v for k, v in options.items() if k != "output_padding"}
        dx = reference.conv(gy, w, None, **conv_options)
        _, dw, _ = reference.conv_grads(gy, w, x, **conv_options)
    arrays = {"x": x, "weight": w, "grad_output": gy}
    return arrays, {"forward": y, "input_grad": dx, "weight_grad": dw}


LAYERS = [(*case, False) for case in CONV_CASES[1:]] + [(*c, True) for c in TRANSPOSED_CASES]


@pytest.mark.parametrize("input_shape, weight_shape, options, transposed", LAYERS)
def test_each_pass_runs_as_described(input_shape, weight_shape, options, transposed):
    """The correlation each pass names, run on arrays of its stated shapes, gives its
    stated output shape; the step it reports, run on the layer's arrays, gives the slow
    reference's forward, dE/dX and dE/dF."""
    report = explain(input_shape, weight_shape, transposed=transposed, **options)
    rng = np.random.default_rng(2)
    for p in report.passes.values():
        out = correlate(rng.standard_normal(p.lhs_shape), rng.standard_normal(p.rhs_shape), p.corr)
        assert out.shape == p.out_shape
    arrays, expected = _expected(input_shape, weight_shape, options, transposed)
    for name, p in report.passes.items():
        got = run(p.step, arrays)
        assert got.shape == p.result_shape == expected[name].shape
        np.testing.assert_allclose(got, expected[name], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("input_shape, weight_shape, options, transposed", LAYERS)
def test_the_functions_run_the_steps_explain_reports(
    input_shape, weight_shape, options, transposed, monkeypatch
):
    """Every pass of the public functions runs exactly the step ``explain`` shows."""
    ran = []

    def recording(step, *args, **kwargs):
        ran.append(step)
        return run(step, *args, **kwargs)

    monkeypatch.setattr(functional, "run", recording)
    report = explain(input_shape, weight_shape, transposed=transposed, **options)
    arrays, _ = _expected(input_shape, weight_shape, options, transposed)
    x, w, gy = arrays["x"], arrays["weight"], arrays["grad_output"]
    if transposed:
        convgrad.conv_transpose(x, w, **options)
        convgrad.conv_transpose_backward(gy, x, w, **options)
    else:
        convgrad.conv(x, w, **options)
        convgrad.conv_backward(gy, x, w, **options)
    passes = report.passes
    assert ran == [passes["forward"].step, passes["input_grad"].step, passes["weight_grad"].step]


def test_operand_labels_follow_the_recipe():
    """What a reader sees is what each step does: flips, swaps and which array slides."""
    labels = {
        name: (p.lhs, p.rhs, p.flipped)
        for name, p in explain((2, 3, 8, 8), (4, 3, 3, 3), stride=2).passes.items()
    }
    assert labels == {
        "forward": ("X", "F", False),
        "input_grad": ("dE/dO", "flip(F)ᵀ", True),
        "weight_grad": ("Xᵀ", "dE/dOᵀ", False),
    }
    transposed = explain((2, 3, 5, 5), (3, 2, 3, 3), transposed=True, stride=2).passes
    assert [(p.lhs, p.rhs) for p in transposed.values()] == [
        ("X", "flip(F)ᵀ"),
        ("dE/dO", "F"),
        ("dE/dOᵀ", "Xᵀ"),
    ]


@pytest.mark.parametrize("input_shape, weight_shape, options", TRANSPOSED_CASES)
def test_transposed_numbers_match_the_functions(input_shape, weight_shape, options):
    report = explain(input_shape, weight_shape, transposed=True, **options)
    x, w = _arrays(input_shape, weight_shape)
    y = convgrad.conv_transpose(x, w, **options)
    gy = np.ones_like(y)
    dx, dw, _ = convgrad.conv_transpose_backward(gy, x, w, **options)
    assert report.transposed
    assert report.shapes["output"] == y.shape == report.passes["forward"].result_shape
    assert report.shapes["grad_input"] == dx.shape == report.passes["input_grad"].result_shape
    assert report.shapes["grad_weight"] == dw.shape == report.passes["weight_grad"].result_shape
    assert report.shapes["bias"] == (y.shape[1],)
    groups = options.get("groups", 1)
    nd = w.ndim - 2
    macs = x.size * (y.shape[1] // groups) * math.prod(w.shape[2:])  # each x meets K/g*k taps
    assert report.macs["forward"] == macs
    # the forward GEMM runs over the stride-spread input: its columns are the output positions
    g, rows, depth, cols = report.gemms["forward"]
    assert g * rows == y.shape[1] and cols == y.shape[0] * math.prod(y.shape[-nd:])


def test_same_padding_with_stride_is_resolved_and_explained():
    report = explain((1, 1, 9, 10), (1, 1, 3, 4), stride=2, padding="same")
    y = convgrad.conv(np.zeros((1, 1, 9, 10)), np.zeros((1, 1, 3, 4)), stride=2, padding="same")
    assert y.shape[2:] == (5, 5) == (math.ceil(9 / 2), math.ceil(10 / 2))
    # H: total (5-1)*2 + 3 - 9 = 2 -> (1, 1); W: (5-1)*2 + 4 - 10 = 2 -> (1, 1)
    assert report.padding == ((1, 1), (1, 1))
    report = explain((1, 1, 10), (1, 1, 5), stride=2, padding="same")
    assert report.padding == ((1, 2),)  # total (5-1)*2 + 5 - 10 = 3: odd pixel at the high end
    text = str(report)
    assert "low 1, high 2" in text
    assert "⌊(10 + 1 + 2 − 1·(5 − 1) − 1) / 2⌋ + 1 = 5" in text


def test_origin_layer_text():
    report = explain((5, 100, 100), (10, 5, 5, 5))
    text = str(report)
    assert "⌊(100 + 0 + 0 − 1·(5 − 1) − 1) / 1⌋ + 1 = 96" in text
    assert "dE/dF[k, c] = Σ_n X[n, c] ⋆" in text
    assert "10·5 = 50 separate 2-D correlations" in text
    assert "flip" in text and "summed:" in text and "im2col GEMM" in text
    assert "1 × [10 × 125] · [125 × 9216]" in text  # 10 filters of 5*5*5 over 96*96 positions


def test_stride_remainder_is_pointed_out():
    text = str(explain((1, 8, 8), (1, 1, 3, 3), stride=2))
    assert "stride leaves 1" in text  # (8 - 3) % 2 = 1 row never read


def test_printing_plain_and_rich():
    report = explain((2, 3, 8), (4, 3, 3), stride=2, padding=1)
    buf = io.StringIO()
    report.print(buf, width=1000)  # not a terminal: plain text
    assert buf.getvalue() == str(report)
    buf = io.StringIO()
    report.print(buf, width=60)  # prose wrapped to the width, no word lost or cut
    lines = buf.getvalue().splitlines()
    assert max(map(len, lines)) <= 60 and len(lines) > len(str(report).splitlines())
    assert buf.getvalue().split() == str(report).split()
    rich = pytest.importorskip("rich.console")
    console = rich.Console(file=io.StringIO(), width=120, record=True)
    console.print(report)
    rendered = console.export_text()
    assert "dE/dF" in rendered and "Shapes" in rendered


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (((5, 100, 100), (10, 4, 5, 5)), {}, "to have 4 channels"),
        (((5, 100, 100), (10, 5, 5, 5)), {"padding": "causal"}, "padding"),
        (((5, 4, 4), (10, 5, 5, 5)), {}, "output would be empty"),
        (((5, 10, 10), (10, 5, 3, 3)), {"groups": 2}, "divisible by groups"),
        (((2, 4, 9), (4, 2, 3)), {"transposed": True, "padding_mode": "reflect"}, "padding_mode"),
        (((2, 4, 9), (4, 2, 3)), {"output_padding": 1}, "output_padding"),
    ],
)
def test_bad_layers_raise(args, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        explain(*args, **kwargs)


def test_parsers():
    assert parse_shape("5x100x100") == (5, 100, 100)
    assert parse_padding("1") == 1
    assert parse_padding("1,2") == (1, 2)
    assert parse_padding("1:2,0:1") == ((1, 2), (0, 1))
    assert parse_padding("same") == "same"
    assert parse_padding("full") == "full"
    with pytest.raises(ValueError):
        parse_shape("5xax3")


# ---------------------------------------------------------------------------- figure


@pytest.mark.slow
@pytest.mark.parametrize(
    "input_shape, weight_shape, options, suffix",
    [
        ((5, 100, 100), (10, 5, 5, 5), {}, ".png"),
        ((2, 3, 10), (4, 3, 3), {"stride": 2, "padding": 1}, ".png"),
        ((1, 4, 7, 7), (6, 2, 3, 3), {"stride": 2, "padding": "same", "groups": 2}, ".png"),
        ((1, 2, 4, 6, 6), (3, 2, 2, 3, 3), {"stride": (1, 2, 2)}, ".png"),
        (
            (1, 4, 5, 5),
            (4, 2, 3, 3),
            {"stride": 2, "transposed": True, "output_padding": 1},
            ".png",
        ),
        ((3, 32, 32), (20, 3, 3, 3), {"padding": 1}, ".svg"),  # more filters than drawn
    ],
)
def test_figure_is_written(tmp_path, input_shape, weight_shape, options, suffix):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"fig{suffix}"
    fig = explain(input_shape, weight_shape, **options).figure(path)
    assert path.exists() and path.stat().st_size > 10_000
    width, height = fig.get_size_inches()
    assert 5 < width < 40 and 3 < height < 40
    head = path.read_bytes()[:8]
    if suffix == ".png":
        assert head == b"\x89PNG\r\n\x1a\n"
    else:
        assert b"<svg" in path.read_bytes()[:2000]


@pytest.mark.slow
def test_figure_worked_example_and_bad_path(tmp_path):
    pytest.importorskip("matplotlib")
    report = explain((1, 2, 6, 6), (2, 2, 3, 3), stride=2, padding=1)
    plain = report.figure(tmp_path / "a.png", worked=False)
    worked = report.figure(tmp_path / "b.png", worked=True)
    assert worked.get_size_inches()[1] > plain.get_size_inches()[1]  # room for the numbers
    texts = {t.get_text() for ax in worked.axes for t in ax.texts}
    assert "dE/dF[k, c]" in texts
    with pytest.raises(ValueError, match="figure path"):
        report.figure(tmp_path / "fig.txt")


# ------------------------------------------------------------------------------- CLI


def _run(*args):
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath(src), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "convgrad", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_default_explains_the_origin_layer():
    for args in ((), ("explain",)):
        proc = _run(*args)
        assert proc.returncode == 0, proc.stderr
        assert "10×96×96" in proc.stdout and "dE/dF[k, c]" in proc.stdout


@pytest.mark.slow
def test_cli_options_and_figure(tmp_path):
    path = tmp_path / "t.png"
    proc = _run(
        "explain",
        "--input",
        "2x4x9x10",
        "--weight",
        "6x2x3x3",
        "--stride",
        "2",
        "--padding",
        "same",
        "--groups",
        "2",
        "--figure",
        str(path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "2×6×5×5" in proc.stdout and path.stat().st_size > 10_000
    proc = _run(
        "explain",
        "--input",
        "1x2x7",
        "--weight",
        "2x3x3",
        "--transposed",
        "--stride",
        "2",
        "--output-padding",
        "1",
        "--padding",
        "1:0",
    )
    assert proc.returncode == 2 and "padding" in proc.stderr  # pairs are not for transposed
    proc = _run(
        "explain",
        "--input",
        "1x2x7",
        "--weight",
        "2x3x3",
        "--transposed",
        "--stride",
        "2",
        "--output-padding",
        "1",
    )
    assert proc.returncode == 0 and "1×3×16" in proc.stdout  # (7-1)*2 + 3 + 1 = 16


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ("explain", "--input", "5x100x100", "--weight", "10x4x5x5"),
        ("explain", "--input", "5xx100", "--weight", "10x5x5x5"),
        ("explain", "--padding", "1:2:3"),
        ("explain", "--stride", "0"),
        ("explain", "--nonsense"),
        ("explain", "--padding-mode", "mirror"),
        ("explain", "--figure", "out.txt"),
        ("explain", "--figure", ""),
        ("explain", "--figure", "", "--worked"),
        ("explain", "--batch", "0"),
    ],
)
def test_cli_bad_input_is_one_line(args):
    proc = _run(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convgrad explain: error:")


@pytest.mark.slow
def test_import_stays_light():
    code = (
        "import sys, convgrad; heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'rich', 'tqdm', 'dask', 'torch', 'sklearn')]; print(heavy)"
    )
    env = dict(os.environ)
    src = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    assert callable(convgrad.explain) and callable(convgrad.check) and callable(convgrad.gradcheck)


def test_batch_option_and_padded_copy():
    report = explain((5, 100, 100), (10, 5, 5, 5), batch=4, stride=2, padding="same")
    y = convgrad.conv(np.zeros((4, 5, 100, 100)), np.zeros((10, 5, 5, 5)), stride=2, padding="same")
    assert report.shapes["output"] == y.shape == (4, 10, 50, 50)
    # 'same', k=5, s=2 on 100: total (50-1)*2 + 5 - 100 = 3 -> (1, 2): X is copied at 103x103
    assert report.padding == ((1, 2), (1, 2))
    assert report.passes["forward"].padded_bytes == 4 * 5 * 103 * 103 * 8
    assert explain((5, 9, 9), (1, 5, 3, 3)).passes["forward"].padded_bytes == 0
    with pytest.raises(ValueError, match="batch"):
        explain((2, 5, 9, 9), (1, 5, 3, 3), batch=3)


@pytest.mark.parametrize(
    "input_shape, weight_shape, options",
    [
        ((1, 2, 7, 7), (4, 2, 3, 3), {"stride": 2, "padding": 1}),
        ((1, 1, 10), (2, 1, 3), {"dilation": 2, "padding": (2,)}),
        ((1, 2, 5, 5), (2, 1, 3, 3), {"stride": 2, "transposed": True, "output_padding": 1}),
    ],
)
def test_worked_example_numbers_match_the_reference(input_shape, weight_shape, options):
    """The figure's numbers, recomputed with the slow float64 reference."""
    from convgrad.tools.figure import layout, worked_numbers

    report = explain(input_shape, weight_shape, **options)
    x, dy, gw = worked_numbers(report, layout(report))
    kernel = weight_shape[2:]
    if options.get("transposed"):
        opts = {k: v for k, v in options.items() if k != "transposed"}
        # dE/dW of the transposed conv = dE/dW of the conv mapping dE/dO's shape to x's shape
        w = np.zeros((1, 1, *kernel))
        want = reference.conv_grads(dy[None, None], w, x[None, None], opts["stride"])[1]
        assert reference.conv_transpose(x[None, None], w, **opts).shape[2:] == dy.shape
    else:
        want = reference.conv_grads(
            x[None, None],
            np.zeros((1, 1, *kernel)),
            dy[None, None],
            options.get("stride", 1),
            options.get("padding", 0),
            options.get("dilation", 1),
        )[1]
    np.testing.assert_allclose(gw, want[0, 0], atol=1e-12)


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (((5, 100, 100), (10, 5, 5, 5)), {"dtype": "int8"}, TypeError, "dtype"),
        (((5, 100, 100), (10, 5, 5, 5)), {"dtype": "complex128"}, TypeError, "dtype"),
        (((5, 100, 100), (10, 5, 5, 5)), {"dtype": "foo"}, TypeError, "dtype"),
        ((5, (10, 5, 5, 5)), {"batch": 3}, TypeError, "input_shape"),
        (((5, 100, 100), "abc"), {"batch": 3}, TypeError, "weight_shape"),
        (((5, 100, 100), (10, 5)), {"batch": 3}, ValueError, "weight_shape"),
        (((5, 100, 100), (10, 5, 5, 5)), {"batch": 2.0}, TypeError, "batch"),
        (((5, 100, 100), (10, 5, 5, 5)), {"algorithm": "fft2000"}, ValueError, "algorithm"),
        (((5, 100, 100), (10, 5, 5, 5)), {"workspace_limit": 0}, ValueError, "workspace_limit"),
    ],
)
def test_bad_options_name_the_argument(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        explain(*args, **kwargs)


def test_explain_takes_every_option_of_the_functions():
    import inspect

    params = inspect.signature(explain).parameters
    for fn in (convgrad.conv, convgrad.conv_transpose, convgrad.conv_backward):
        names = set(inspect.signature(fn).parameters) - {"x", "weight", "bias", "grad_output"}
        assert names <= set(params), (fn.__name__, names - set(params))


def test_float16_workspace_is_counted_in_float32():
    # API.md: float16 is computed with float32 accumulation, so its buffers are float32
    half, single, double = (
        explain((4, 20, 20), (6, 4, 3, 3), dtype=d) for d in ("float16", "float32", "float64")
    )
    assert half.workspace_bytes == single.workspace_bytes
    for name, bytes_ in double.workspace_bytes.items():  # buffers scale with the item size
        assert bytes_ == 2 * single.workspace_bytes[name] > 0


def test_algorithm_and_workspace_limit_options():
    name = convgrad._primitive.algorithm_names()[0]
    report = explain((5, 100, 100), (10, 5, 5, 5), algorithm=name, workspace_limit=2**20)
    assert set(report.algorithms.values()) == {name}
    assert report.options["algorithm"] == name and report.options["workspace_limit"] == 2**20
    text = str(report)
    # the forward columns (5·25 x 96·96 float64 = 8.8 MiB, at least) exceed 1 MiB: chunked
    assert report.passes["forward"].workspace_bytes >= 5 * 25 * 96 * 96 * 8
    forward = text.split("== Forward")[1].split("==")[1]
    assert "chunks" in forward and "1.0 MiB" in forward
    assert "within" not in forward
    small = str(explain((5, 100, 100), (10, 5, 5, 5)))
    assert "within the 256.0 MiB workspace limit" in small


def test_the_limit_in_force_is_reported():
    """Without ``workspace_limit`` the report uses the limit the functions use: the one
    set with ``set_workspace_limit``."""
    assert explain((5, 9, 9), (2, 5, 3, 3)).workspace_limit == convgrad.get_workspace_limit()
    with convgrad.set_workspace_limit(3 * 2**20):
        report = explain((5, 100, 100), (10, 5, 5, 5))
        assert report.workspace_limit == 3 * 2**20 == convgrad.get_workspace_limit()
        forward = str(report).split("== Forward")[1].split("==")[1]
        assert "3.0 MiB" in forward and "256" not in forward
        assert explain((5, 9, 9), (2, 5, 3, 3), workspace_limit=2**20).workspace_limit == 2**20
    assert explain((5, 9, 9), (2, 5, 3, 3)).workspace_limit == 256 * 2**20


def test_tool_modules_are_reached_by_their_own_names():
    """``convgrad.explain`` and ``convgrad.check`` are functions; their modules live in
    ``convgrad.tools`` under their own names, nothing hiding them."""
    import convgrad.tools.check as check_module
    import convgrad.tools.explain as explain_module
    import convgrad.tools.gradcheck as gradcheck_module

    assert explain_module.explain is convgrad.explain and explain_module.Report
    assert check_module.check is convgrad.check and check_module.CheckReport
    assert gradcheck_module.gradcheck is convgrad.gradcheck
    assert issubclass(gradcheck_module.GradcheckError, AssertionError)


@pytest.mark.slow
def test_cli_algorithm_and_workspace_limit():
    proc = _run("explain", "--algorithm", "nope")
    assert proc.returncode == 2 and "algorithm" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("explain", "--workspace-limit", "1048576")
    assert proc.returncode == 0 and "1.0 MiB limit" in proc.stdout


def _figure_texts(report) -> list[str]:
    fig = report.figure()
    return [t.get_text() for t in fig.texts] + [t.get_text() for a in fig.axes for t in a.texts]


@pytest.mark.slow
@pytest.mark.parametrize(
    "input_shape, weight_shape, options",
    [
        ((2, 6, 6), (3, 2, 3, 3), {"stride": 2, "padding": "same"}),
        ((2, 6, 6), (3, 2, 3, 3), {}),
        ((3, 5, 5), (3, 2, 3, 3), {"stride": 2, "transposed": True}),
        ((3, 5, 5), (3, 2, 3, 3), {"transposed": True}),
    ],
)
def test_figure_formulas_spread_the_map_exactly_when_strided(input_shape, weight_shape, options):
    pytest.importorskip("matplotlib")
    report = explain(input_shape, weight_shape, **options)
    formulas = [t for t in _figure_texts(report) if "Σ" in t]
    assert len(formulas) == 2  # the title and the highlighted pair
    strided = options.get("stride", 1) > 1
    for text in formulas:
        assert ("dilate_s(" in text) is strided, text
        # the spread map is dE/dO for a convolution and X for a transposed one
        if strided:
            spread = "X[n" if options.get("transposed") else "dE/dO[n"
            assert f"dilate_s({spread}" in text, text


@pytest.mark.slow
def test_depthwise_figure_says_one_tile():
    pytest.importorskip("matplotlib")
    texts = _figure_texts(explain((4, 10, 10), (4, 1, 3, 3), groups=4))
    assert any("stacks its 1 tile into" in t for t in texts)


@pytest.mark.parametrize(
    "input_shape, weight_shape, options",
    [
        ((3, 5, 5), (3, 2, 3, 3), {"stride": 2, "padding": (1, 0), "output_padding": (1, 0)}),
        ((2, 3, 7), (3, 2, 3), {"stride": 3, "padding": 1, "output_padding": 2, "dilation": 2}),
        ((2, 3, 7), (3, 2, 3), {"stride": 2, "padding": 2}),
    ],
)
def test_transposed_padding_lines_give_the_padding_that_runs(input_shape, weight_shape, options):
    import re

    report = explain(input_shape, weight_shape, transposed=True, **options)
    rows = [line for line in report.padding_text if line.startswith("  ")]
    pairs = []
    for line in rows:
        numbers = [int(v) for v in re.findall(r"= (-?\d+)", line)]
        pairs.append((numbers[0], numbers[-1]))  # low, and high (= low without output_padding)
    assert tuple(pairs) == report.passes["forward"].corr.padding
    # the spread input, padded so, gives the output size conv_transpose returns
    x, w = _arrays(input_shape, weight_shape)
    y = convgrad.conv_transpose(x, w, **options)
    nd = len(weight_shape) - 2
    s = convgrad._spec.int_tuple(options.get("stride", 1), nd, "s", 1)
    d = convgrad._spec.int_tuple(options.get("dilation", 1), nd, "d", 1)
    for size, out, (lo, hi), k, si, di in zip(
        input_shape[-nd:], y.shape[-nd:], pairs, weight_shape[2:], s, d
    ):
        assert (size - 1) * si + 1 + lo + hi - di * (k - 1) == out


@pytest.mark.slow
def test_cli_worked_needs_a_figure():
    proc = _run("explain", "--worked")
    assert proc.returncode == 2 and "--figure" in proc.stderr and "Traceback" not in proc.stderr


def test_per_group_is_said_only_with_groups():
    plain = str(explain((3, 5, 5), (3, 2, 3, 3), transposed=True))
    grouped = str(explain((4, 5, 5), (4, 1, 3, 3), transposed=True, groups=2))
    assert "per group" not in plain and "(2 per group)" in grouped


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_worked_example_shows_the_mode_padded_input(mode):
    """The figure says the middle map slides over the left one: with a padding mode the left
    one must be X padded in that mode, and sliding over it must give the tile shown."""
    from convgrad.tools.figure import layout, worked_numbers

    report = explain((1, 1, 6, 5), (1, 1, 3, 3), stride=2, padding=(2, 1), padding_mode=mode)
    x_shown, dy, gw = worked_numbers(report, layout(report))
    assert x_shown.shape == (6 + 4, 5 + 2)
    want = reference.conv_grads(x_shown[None, None], np.zeros((1, 1, 3, 3)), dy[None, None], 2)[1]
    np.testing.assert_allclose(gw, want[0, 0], atol=1e-12)
    # the interior is X itself, the border copies of it (numpy's names for the modes)
    inner = x_shown[2:-2, 1:-1]
    numpy_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    np.testing.assert_array_equal(np.pad(inner, ((2, 2), (1, 1)), mode=numpy_mode), x_shown)
    pytest.importorskip("matplotlib")
    assert any(f"padding_mode '{mode}'" in t for t in _figure_texts(report))


@pytest.mark.slow
def test_cli_says_when_the_worked_example_cannot_be_drawn(tmp_path):
    pytest.importorskip("matplotlib")
    big = _run("explain", "--worked", "--figure", str(tmp_path / "big.png"))
    assert big.returncode == 0 and "no worked example" in big.stderr
    args = ["--input", "1x6x6", "--weight", "1x1x3x3", "--worked"]
    small = _run("explain", *args, "--figure", str(tmp_path / "small.png"))
    assert small.returncode == 0 and "no worked example" not in small.stderr
