"""Types: mypy reads convgrad's annotations (py.typed) and finds the public API typed.

Two checks, both run by mypy in a subprocess: ``--strict`` on code that uses every public
function, layer and ``nn`` class as a user would (so no result may be ``Any`` where an
array is declared, and no call may be untyped), and ``python -m mypy`` with the
``[tool.mypy]`` settings of pyproject.toml (strict on ``__init__``, ``functional`` and
``layers``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = """
from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np
from numpy.typing import NDArray

import convgrad
from convgrad import nn
from convgrad.tools.check import CheckReport
from convgrad.tools.explain import Report
from convgrad.tools.gradcheck import GradcheckResult

rng = np.random.default_rng(0)
x: NDArray[np.float64] = rng.standard_normal((2, 3, 8, 8))
w: NDArray[np.float64] = rng.standard_normal((4, 3, 3, 3))
b = np.zeros(4)

y: NDArray[np.floating[Any]] = convgrad.conv(x, w, b, stride=1, padding="same")
y_list: np.ndarray = convgrad.conv([[[1.0, 2.0, 3.0]]], [[[1.0, 1.0]]])
gy = np.ones_like(y)
gx: np.ndarray = convgrad.conv_input_grad(gy, w, x.shape, padding="same")
gw: np.ndarray = convgrad.conv_weight_grad(x, gy, w.shape, padding=1)
gb: np.ndarray = convgrad.conv_bias_grad(gy)
dx, dw, db = convgrad.conv_backward(gy, x, w, b, padding=1, algorithm="auto")
first: np.ndarray = dx
maybe: np.ndarray | None = db
t: np.ndarray = convgrad.conv_transpose(x, rng.standard_normal((3, 2, 3, 3)), stride=2)
tx, tw, tb = convgrad.conv_transpose_backward(np.ones_like(t), x, rng.standard_normal((3, 2, 3, 3)), stride=2)
second: np.ndarray = tx

with convgrad.set_workspace_limit(2**20):
    limit: int = convgrad.get_workspace_limit()

for layer in (
    convgrad.Conv2d(3, 4, 3, padding=1, seed=0),
    nn.Conv2d(3, 4, 3, padding="same", dtype=np.float64, rng=rng),
):
    out: np.ndarray = layer(x)
    back: np.ndarray = layer.backward(np.ones_like(out))
one: np.ndarray = convgrad.Conv1d(3, 2, 3)(x[:, :, 0])
three: np.ndarray = convgrad.Conv3d(3, 2, 1)(x[:, :, None])
up1: np.ndarray = convgrad.ConvTranspose1d(3, 2, 3, stride=2)(x[:, :, 0])
up2: np.ndarray = convgrad.ConvTranspose2d(3, 2, 3, stride=2)(x, output_size=(17, 17))
layer3 = convgrad.ConvTranspose3d(3, 2, 1)
up3: np.ndarray = layer3.backward(np.ones_like(layer3(x[:, :, None])))

model = nn.Sequential(
    nn.Conv2d(3, 4, 3, padding=1, seed=0),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(4 * 4 * 4, 10, seed=1),
)
opt: nn.SGD | nn.Adam = nn.Adam(model.parameters(), lr=1e-2)
opt = nn.SGD(model, lr=0.1, momentum=0.9)
loss_fn = nn.CrossEntropyLoss()
loss: float = loss_fn(model(x), np.arange(2))
grad: np.ndarray = loss_fn.backward()
loss, grad = nn.softmax_cross_entropy(model(x), np.arange(2))
opt.zero_grad()
model.backward(grad)
opt.step()
state: dict[str, Any] = opt.state_dict()
opt.load_state_dict(state)
params: list[nn.Parameter] = model.parameters()
keys: nn.IncompatibleKeys = model.load_state_dict(model.state_dict(), strict=False)
model.train(False)
path: str = nn.save(model, os.path.join(tempfile.mkdtemp(), "m.npz"))
loaded: nn.IncompatibleKeys = nn.load(model, path)
sub: nn.Module = model[0]

report: Report = convgrad.explain((5, 100, 100), (10, 5, 5, 5))
text: str = str(report)


def mine(
    x: np.ndarray, w: np.ndarray, g: np.ndarray, s: int, p: int, d: int, groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    return convgrad.conv_backward(g, x, w, None, s, p, d, groups)


graded: CheckReport = convgrad.check(mine, features=["basic"])
ok: bool = graded.ok
result: GradcheckResult = convgrad.gradcheck(
    lambda a: convgrad.conv(a, w), x, backward=lambda g, a: convgrad.conv_input_grad(g, w, a.shape)
)
"""

CONFIG = """
[mypy]
strict = True
warn_unused_configs = True

[mypy-convgrad,convgrad.*]
follow_imports = silent
"""


def _mypy(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (it comes with the test extra)")
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_user_code_is_strictly_typed(tmp_path):
    (tmp_path / "user.py").write_text(textwrap.dedent(USER_CODE))
    (tmp_path / "mypy.ini").write_text(CONFIG)
    result = _mypy(["--config-file", "mypy.ini", "user.py"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # the user code runs, too
    run = subprocess.run(
        [sys.executable, "user.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.slow
def test_a_wrong_use_is_caught(tmp_path):
    """The check can fail: a result used as the wrong type is an error."""
    (tmp_path / "user.py").write_text(
        "import numpy as np\nimport convgrad\n"
        "y: str = convgrad.conv(np.ones((1, 1, 3)), np.ones((1, 1, 2)))\n"
    )
    (tmp_path / "mypy.ini").write_text(CONFIG)
    result = _mypy(["--config-file", "mypy.ini", "user.py"], tmp_path)
    assert result.returncode == 1 and "Incompatible types in assignment" in result.stdout


@pytest.mark.slow
def test_public_modules_pass_the_project_settings():
    result = _mypy([], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_py_typed_is_shipped():
    assert (ROOT / "src" / "convgrad" / "py.typed").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'convgrad = ["py.typed"]' in pyproject
