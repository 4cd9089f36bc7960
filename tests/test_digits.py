"""The digits example: data, a short seeded training run whose loss falls, reproducibility,
the command line (plot and parameters written). The full >= 97 % run is the example's."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

from convgrad import cli, nn  # noqa: E402
from convgrad.examples import digits  # noqa: E402

pytestmark = pytest.mark.slow  # trains small networks


@pytest.fixture(scope="module")
def data():
    return digits.load_data(seed=0)


def test_load_data_is_a_seeded_stratified_split(data):
    x_train, y_train, x_test, y_test = data
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0 <= x_train.min() and x_train.max() <= 1 and x_train.max() > 0.9
    counts = np.bincount(y_test, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # ~45 of each digit
    again = digits.load_data(seed=0)
    np.testing.assert_array_equal(again[0], x_train)
    other = digits.load_data(seed=1)
    assert not np.array_equal(other[1], y_train)


def test_model_shapes_and_seeded_init():
    a, b, c = digits.build_model(0), digits.build_model(0), digits.build_model(1)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(np.array_equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not np.array_equal(a.state_dict()["0.weight"], c.state_dict()["0.weight"])
    assert a(np.zeros((3, 1, 8, 8), np.float32)).shape == (3, 10)
    assert sum(len(a[i].parameters()) for i in (0, 2, 6)) == 6


def test_short_seeded_training_run_lowers_the_loss(data):
    x_train, y_train, x_test, y_test = data
    model = digits.build_model(0)
    optimizer = nn.Adam(model.parameters(), lr=3e-3)
    loss_before, acc_before = digits.evaluate(model, x_test, y_test)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(25):
        idx = rng.choice(len(y_train), 64, replace=False)
        losses.append(digits.train_step(model, optimizer, x_train[idx], y_train[idx])[0])
    loss_after, acc_after = digits.evaluate(model, x_test, y_test)
    assert loss_before > 2.0  # chance level is ln(10) = 2.30
    assert loss_after < 0.5 * loss_before
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert acc_after > acc_before + 0.4


def test_forward_backward_accumulates_without_stepping(data):
    x_train, y_train, _, _ = data
    model = digits.build_model(0)
    before = model.state_dict()
    digits.forward_backward(model, x_train[:16], y_train[:16])
    g1 = {n: p.grad.copy() for n, p in model.named_parameters()}
    digits.forward_backward(model, x_train[:16], y_train[:16])
    for n, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * g1[n], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(p.value, before[n])


def test_train_is_reproducible(data):
    x_train, y_train, x_test, y_test = data
    small = (x_train[:256], y_train[:256], x_test[:100], y_test[:100])
    h1 = digits.train(epochs=1, batch_size=64, seed=3, progress=False, data=small)
    h2 = digits.train(epochs=1, batch_size=64, seed=3, progress=False, data=small)
    assert len(h1["step_loss"]) == 4
    assert h1["step_loss"] == h2["step_loss"] and h1["test_acc"] == h2["test_acc"]
    s1, s2 = h1["model"].state_dict(), h2["model"].state_dict()
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)


def test_command_writes_plot_and_parameters(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot, params = tmp_path / "curves.png", tmp_path / "params.npz"
    argv = ["train-digits", "--epochs", "1", "--no-progress", "--target", "0"]
    code = cli.main([*argv, "--plot", str(plot), "--save", str(params)])
    assert code == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(plot) in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    model = digits.build_model(seed=123)
    nn.load(model, params)  # the saved file fits the example's model
    _, _, x_test, y_test = digits.load_data(0)
    assert digits.evaluate(model, x_test, y_test)[1] > 0.6  # one epoch is far above chance


def test_command_fails_below_target(tmp_path):
    code = digits.main(
        ["--epochs", "1", "--batch-size", "256", "--no-progress", "--no-plot", "--target", "0.999"]
    )
    assert code == 1


@pytest.mark.parametrize(
    "command", [["-m", "convgrad", "train-digits"], ["-m", "convgrad.examples.digits"]]
)
def test_runnable_from_the_shell(command):
    result = subprocess.run(
        [sys.executable, *command, "--help"], capture_output=True, text=True, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    assert "--epochs" in result.stdout and "--plot" in result.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--plot", "{tmp}/no/such/folder/curves.png"], "--plot: folder"),
        (["--plot", "{tmp}/curves.jpeg2"], "--plot must end in"),
        (["--no-plot", "--save", "{tmp}/missing/params.npz"], "--save: folder"),
        (["--no-plot", "--lr", "-1"], "--lr must be > 0"),
    ],
)
def test_bad_output_paths_are_refused_before_training(
    tmp_path, monkeypatch, capsys, extra, message
):
    def no_training(*args, **kwargs):
        raise AssertionError("trained although the arguments are bad")

    monkeypatch.setattr(digits, "train", no_training)
    argv = ["--epochs", "1", "--no-progress", *[a.format(tmp=tmp_path) for a in extra]]
    with pytest.raises(SystemExit) as exc:
        digits.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
