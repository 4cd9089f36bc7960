"""Train a small CNN on scikit-learn's bundled 8x8 digits with convgrad's layers.

    convgrad train-digits                  # or: python -m convgrad.examples.digits
    convgrad train-digits --epochs 15 --plot digits_training.png --save digits.npz

Network (x: (N, 1, 8, 8) pixel values / 16):
    Conv2d(1, 16, 3, padding=1) -> ReLU -> Conv2d(16, 32, 3, padding=1) -> ReLU
    -> MaxPool2d(2) -> Flatten -> Linear(32*4*4, 10)
trained with Adam (cosine-decayed learning rate) on softmax cross-entropy, a stratified 75/25
split, everything seeded: the same seed gives the same numbers. No download.

Reusable pieces (e.g. for data-parallel training): :func:`load_data`, :func:`build_model`,
:func:`forward_backward` (gradients only), :func:`train_step` (one optimizer step),
:func:`evaluate`, :func:`train`, :func:`plot_history`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import nn
from .._extras import require, run_command

__all__ = [
    "load_data",
    "build_model",
    "forward_backward",
    "train_step",
    "evaluate",
    "cosine_lr",
    "train",
    "plot_history",
    "main",
]

DEFAULTS = {"epochs": 15, "batch_size": 32, "lr": 3e-3, "seed": 0, "target": 0.97}


# the packages of the ``examples`` extra, imported where they are used
def require_sklearn():
    return require("sklearn", extra="examples", package="scikit-learn", purpose="the digits data")


def _require_tqdm():
    return require("tqdm.auto", extra="examples", purpose="the training progress bar")


def _require_matplotlib():
    return require("matplotlib", extra="examples", purpose="the training plot")


class _NoBar:
    """Stands in for a tqdm bar when no progress is shown (tqdm is then not needed)."""

    def __init__(self, **_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return None

    def update(self, n=1):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def set_postfix(self, *args, **kwargs):
        pass


def load_data(
    seed: int = 0, test_size: float = 0.25, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) scaled to [0, 1], integer
    labels (N,); a stratified split seeded by ``seed`` (1797 images in all)."""
    require_sklearn()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(dtype)[:, None]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test


def build_model(seed: int = 0, dtype: Any = np.float32) -> nn.Sequential:
    """The two-convolution CNN, initialised as PyTorch would from ``seed``."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10, dtype=dtype, rng=rng),
    )


def forward_backward(model: nn.Module, xb: np.ndarray, yb: np.ndarray) -> tuple[float, int]:
    """Forward and backward on one batch: *adds* the gradients of the mean loss to the
    model's ``*_grad``. Returns (mean loss, number of correct predictions)."""
    logits = model(xb)
    loss, grad = nn.softmax_cross_entropy(logits, yb)
    model.backward(grad)
    return loss, int((logits.argmax(axis=1) == yb).sum())


def train_step(
    model: nn.Module, optimizer: Any, xb: np.ndarray, yb: np.ndarray
) -> tuple[float, float]:
    """One optimizer step on a batch. Returns (mean loss, accuracy) of the batch."""
    optimizer.zero_grad()
    loss, correct = forward_backward(model, xb, yb)
    optimizer.step()
    return loss, correct / len(yb)


def evaluate(
    model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512
) -> tuple[float, float]:
    """(mean loss, accuracy) of ``model`` on (x, y), without touching gradients."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        loss, _ = nn.softmax_cross_entropy(logits, yb)
        total_loss += loss * len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
    return total_loss / len(y), correct / len(y)


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` at step 0 to 0 at step ``total``."""
    return base * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def train(
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    seed: int = DEFAULTS["seed"],
    progress: bool = True,
    data: tuple | None = None,
) -> dict[str, Any]:
    """Train :func:`build_model` ``(seed)`` on :func:`load_data` ``(seed)`` (or ``data``).

    Returns a history: per-step ``step_loss``; per-epoch ``train_loss``, ``train_acc``,
    ``test_loss``, ``test_acc``; ``seconds`` (wall time) and the trained ``model``.
    The progress bar (``progress=True``) needs tqdm.
    """
    bar_type = _require_tqdm().tqdm if progress else _NoBar
    x_train, y_train, x_test, y_test = load_data(seed) if data is None else data
    model = build_model(seed)
    optimizer = nn.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    steps_per_epoch = math.ceil(len(y_train) / batch_size)
    total = epochs * steps_per_epoch
    history: dict[str, Any] = {
        k: [] for k in ("step_loss", "train_loss", "train_acc", "test_loss", "test_acc")
    }
    start = time.perf_counter()
    step = 0
    with bar_type(total=total, unit="step", file=sys.stderr) as bar:
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            order = rng.permutation(len(y_train))
            seen = loss_sum = correct = 0
            for first in range(0, len(order), batch_size):
                idx = order[first : first + batch_size]
                optimizer.lr = cosine_lr(lr, step, total)
                loss, acc = train_step(model, optimizer, x_train[idx], y_train[idx])
                step += 1
                history["step_loss"].append(loss)
                seen += len(idx)
                loss_sum += loss * len(idx)
                correct += round(acc * len(idx))
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False
                )
            test_loss, test_acc = evaluate(model, x_test, y_test)
            history["train_loss"].append(loss_sum / seen)
            history["train_acc"].append(correct / seen)
            history["test_loss"].append(test_loss)
            history["test_acc"].append(test_acc)
            bar.set_postfix(
                loss=f"{loss_sum / seen:.4f}",
                acc=f"{correct / seen:.3f}",
                test_acc=f"{test_acc:.3f}",
            )
    history["seconds"] = time.perf_counter() - start
    history["model"] = model
    return history


def plot_history(history: dict[str, Any], path: str, target: float | None = None) -> None:
    """Save loss (per step and per epoch) and accuracy curves to ``path`` (Agg backend,
    no pyplot state touched)."""
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    steps = np.arange(1, len(history["step_loss"]) + 1) / max(
        1, len(history["step_loss"]) // max(1, len(epochs))
    )
    ax_loss.plot(steps, history["step_loss"], color="0.75", lw=0.8, label="train (each step)")
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train (epoch mean)")
    ax_loss.plot(epochs, history["test_loss"], "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, history["train_acc"], "o-", label="train")
    ax_acc.plot(epochs, history["test_acc"], "s-", label="test")
    if target:
        ax_acc.axhline(target, color="k", ls=":", lw=1, label=f"target {target:.0%}")
    final = history["test_acc"][-1] if history["test_acc"] else float("nan")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"accuracy (final test {final:.2%})")
    ax_acc.set_ylim(
        max(0.0, min(history["train_acc"] + history["test_acc"], default=0) - 0.02), 1.0
    )
    ax_acc.legend(loc="lower right")
    fig.suptitle("convgrad: 2-conv CNN on 8x8 digits")
    fig.savefig(path, dpi=100)


_PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _check_output_path(parser, option: str, path: str, suffixes) -> None:
    """parser.error (one line, exit 2) if ``path`` cannot be written: a missing folder or,
    given ``suffixes``, an extension not among them."""
    target = Path(path)
    if suffixes is not None and target.suffix.lower() not in suffixes:
        parser.error(f"{option} must end in {', '.join(suffixes)}, got {path!r}")
    folder = target.parent
    if not folder.is_dir():
        parser.error(f"{option}: folder {str(folder)!r} does not exist")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="convgrad train-digits",
        description="Train a 2-conv CNN built from convgrad layers on scikit-learn's 8x8 digits.",
    )
    parser.add_argument(
        "--epochs", type=int, default=DEFAULTS["epochs"], help="default %(default)s"
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULTS["batch_size"], help="default %(default)s"
    )
    parser.add_argument(
        "--lr", type=float, default=DEFAULTS["lr"], help="Adam peak learning rate (%(default)s)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="default %(default)s")
    parser.add_argument(
        "--plot", default="digits_training.png", help="loss/accuracy figure (%(default)s)"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not save the figure")
    parser.add_argument("--save", default=None, metavar="PATH.npz", help="save the parameters")
    parser.add_argument(
        "--target",
        type=float,
        default=DEFAULTS["target"],
        help="exit with status 1 if the test accuracy ends below this (%(default)s; 0: never)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    # check the output paths before training, not after a minute of it
    if not args.no_plot:
        _check_output_path(parser, "--plot", args.plot, _PLOT_SUFFIXES)
    if args.save:
        _check_output_path(parser, "--save", args.save, None)
    # and the optional packages it will need
    require_sklearn()
    if not args.no_progress:
        _require_tqdm()
    if not args.no_plot:
        _require_matplotlib()

    history = train(args.epochs, args.batch_size, args.lr, args.seed, not args.no_progress)
    acc = history["test_acc"][-1]
    print(
        f"test accuracy {acc:.2%} ({len(history['test_acc'])} epochs, seed {args.seed}) "
        f"in {history['seconds']:.1f} s"
    )
    try:
        if not args.no_plot:
            plot_history(history, args.plot, args.target)
            print(f"plot saved to {args.plot}")
        if args.save:
            print(f"parameters saved to {nn.save(history['model'], args.save)}")
    except OSError as exc:
        print(f"convgrad train-digits: error: cannot write: {exc}", file=sys.stderr)
        return 2
    if acc < args.target:
        print(f"test accuracy {acc:.2%} is below the target {args.target:.2%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
