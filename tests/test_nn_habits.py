"""PyTorch habits carry over to convgrad's layers and nn: lazy submodule attributes,
train()/eval(), module iterators, slicing, strict state loading, optimizer state, reprs
and channel-mismatch errors. PyTorch is the oracle wherever it has the same thing."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

import convgrad
from convgrad import nn


def _torch():
    return pytest.importorskip("torch")


def _net(seed: int = 0) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=np.float64, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 3, 5, dtype=np.float64, rng=rng)),
    )


def _torch_net():
    torch = _torch()
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5)),
    )


# ------------------------------------------------------------- lazy submodule attributes


@pytest.mark.slow
def test_submodules_are_attributes_loaded_on_first_use():
    code = (
        "import sys, convgrad\n"
        "before = [m for m in ('convgrad.nn', 'convgrad.reference') if m in sys.modules]\n"
        "assert before == [], before\n"
        "assert convgrad.nn.Conv2d is convgrad.layers.Conv2d is convgrad.Conv2d\n"
        "assert callable(convgrad.reference.conv_grads)\n"
        "assert 'nn' in dir(convgrad) and 'reference' in dir(convgrad)\n"
        "try:\n"
        "    convgrad.no_such_thing\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_thing' in str(exc)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert isinstance(convgrad.nn, types.ModuleType)


# ---------------------------------------------------------------------- train / eval


def test_train_and_eval_propagate_to_children_and_return_the_module():
    model = _net()
    assert model.training and all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model[3].train() is model[3]
    assert model[3][1].training and not model.training and not model[0].training
    assert model.train() is model and all(m.training for m in model.modules())
    assert model.train(False) is model and not model[3][0].training
    with pytest.raises(ValueError, match="mode must be True or False"):
        model.train("no")


# ------------------------------------------------------------------------ iterators


def test_module_iterators_match_torch():
    torch = _torch()
    ours, theirs = _net(), _torch_net()
    for method in ("children", "modules", "named_children", "named_modules"):
        it = getattr(ours, method)()
        assert iter(it) is it, method  # iterators, as in torch
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [n for n, _ in ours.named_children()] == [n for n, _ in theirs.named_children()]
    names = [type(m).__name__ for m in ours.modules()]
    assert names == [type(m).__name__ for m in theirs.modules()]
    assert [type(m).__name__ for m in ours.children()] == [
        type(m).__name__ for m in theirs.children()
    ]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert isinstance(theirs, torch.nn.Module)


def test_a_module_reached_twice_is_listed_once():
    relu = nn.ReLU()
    model = nn.Sequential(relu, nn.Flatten(), relu)
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]
    assert len(list(model.children())) == 3


class _Block(nn.Module):
    """A user's own module holding layers as attributes, as one writes in PyTorch."""

    def __init__(self):
        self.conv = nn.Conv2d(2, 3, 3, padding=1, seed=0)
        self.act = nn.ReLU()
        self._cache = nn.ReLU()  # private: not a child

    def forward(self, x):
        return self.act(self.conv(x))

    def backward(self, grad_y):
        return self.conv.backward(self.act.backward(grad_y))


def test_modules_held_as_attributes_are_children_with_parameters():
    block = _Block()
    assert [n for n, _ in block.named_children()] == ["conv", "act"]
    assert [n for n, _ in block.named_parameters()] == ["conv.weight", "conv.bias"]
    model = nn.Sequential(block, nn.Flatten())
    assert list(model.state_dict()) == ["0.conv.weight", "0.conv.bias"]
    model.eval()
    assert not block.conv.training and block._cache.training
    assert repr(block) == (
        "_Block(\n"
        "  (conv): Conv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
        "  (act): ReLU()\n"
        ")"
    )


# ------------------------------------------------------------------------ Sequential


def test_sequential_indexing_slicing_len_and_iteration():
    model = _net()
    head = model[1:3]
    assert isinstance(head, nn.Sequential) and len(head) == 2
    assert head[0] is model[1] and head[1] is model[2]  # the same modules, not copies
    assert model[-1] is model[3] and len(model) == 4
    assert list(model) == [model[i] for i in range(4)]
    assert isinstance(model[::2], nn.Sequential) and list(model[::2]) == [model[0], model[2]]
    with pytest.raises(IndexError):
        model[4]
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6))
    np.testing.assert_array_equal(head(x), model[2](model[1](x)))


# ------------------------------------------------------------------------ state dict


def test_strict_loading_names_missing_and_unexpected_keys_together():
    model, other = _net(0), _net(1)
    state = other.state_dict()
    del state["0.bias"]
    state["9.weight"] = np.zeros(3)
    before = model.state_dict()
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing" in message and "'0.bias'" in message
    assert "unexpected" in message and "'9.weight'" in message and "strict=False" in message
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_non_strict_loading_loads_the_intersection_as_torch():
    torch = _torch()
    model, other = _net(0), _net(1)
    state = other.state_dict()
    del state["0.bias"]
    state["9.weight"] = np.zeros(3)
    keep = model[0].bias.copy()
    result = model.load_state_dict(state, strict=False)
    assert result == (["0.bias"], ["9.weight"])
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["9.weight"]
    np.testing.assert_array_equal(model[0].bias, keep)
    np.testing.assert_array_equal(model[0].weight, other[0].weight)
    np.testing.assert_array_equal(model[3][1].weight, other[3][1].weight)
    theirs = _torch_net().double()
    expected = theirs.load_state_dict(
        {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=False
    )
    assert result == (expected.missing_keys, expected.unexpected_keys)
    assert repr(model.load_state_dict(other.state_dict())) == "<All keys matched successfully>"
    with pytest.raises(ValueError, match=r"'0\.weight' must have shape"):  # even if not strict
        model.load_state_dict({"0.weight": np.zeros((1, 1))}, strict=False)
    with pytest.raises(TypeError, match="strict"):
        model.load_state_dict(state, strict="no")


def test_file_loading_takes_strict_too(tmp_path):
    model, other = _net(0), _net(1)
    state = other.state_dict()
    del state["3.1.bias"]
    np.savez(tmp_path / "partial.npz", **state)
    with pytest.raises(ValueError, match="missing"):
        nn.load(model, tmp_path / "partial.npz")
    assert nn.load(model, tmp_path / "partial.npz", strict=False).missing_keys == ["3.1.bias"]
    np.testing.assert_array_equal(model[0].weight, other[0].weight)


# ----------------------------------------------------------------- optimizer state


def _train(model, optimizer, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        x = rng.standard_normal((4, 1, 6, 6))
        labels = rng.integers(0, 5, 4)
        optimizer.zero_grad()
        _, grad = nn.softmax_cross_entropy(model(x), labels)
        model.backward(grad)
        optimizer.step()


@pytest.mark.parametrize(
    "make",
    [
        lambda p: nn.Adam(p, lr=0.01, weight_decay=0.01),
        lambda p: nn.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    ],
    ids=["Adam", "SGD"],
)
def test_optimizer_state_round_trip_continues_training_identically(make):
    model = _net(0)
    optimizer = make(model.parameters())
    _train(model, optimizer, 3, seed=1)
    model_state, optimizer_state = model.state_dict(), optimizer.state_dict()
    _train(model, optimizer, 3, seed=2)  # the run that is not interrupted

    resumed = _net(5)  # other initial weights, a fresh optimizer with other settings
    other = make(resumed.parameters())
    other.lr = 1.0
    resumed.load_state_dict(model_state)
    other.load_state_dict(optimizer_state)
    assert other.lr == optimizer.lr
    _train(resumed, other, 3, seed=2)
    for (name, p), (_, q) in zip(model.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(p.value, q.value, err_msg=name)


def test_optimizer_state_dict_is_a_copy_in_torchs_layout():
    torch = _torch()
    model = _net(0)
    optimizer = nn.Adam(model.parameters(), lr=0.01)
    _train(model, optimizer, 2, seed=1)
    state = optimizer.state_dict()
    n = len(model.parameters())
    assert state["param_groups"] == [
        dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, params=list(range(n)))
    ]
    assert sorted(state["state"]) == list(range(n))
    assert all(s["step"] == 2 for s in state["state"].values())
    state["state"][0]["exp_avg"][...] = 0  # the optimizer keeps its own arrays
    assert optimizer.state[0]["exp_avg"].any()
    # PyTorch's names for the same buffers
    tmodel = _torch_net()
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01)
    tmodel(torch.zeros(1, 1, 6, 6)).sum().backward()
    topt.step()
    assert set(topt.state_dict()["state"][0]) == set(state["state"][0])
    tsgd = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    tsgd.step()
    sgd = nn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, sgd, 1, seed=0)
    assert set(sgd.state_dict()["state"][0]) == set(tsgd.state_dict()["state"][0])


def test_bad_optimizer_state_is_refused_and_nothing_changes():
    model = _net(0)
    optimizer = nn.Adam(model.parameters(), lr=0.01)
    _train(model, optimizer, 1, seed=1)
    good = optimizer.state_dict()
    sgd_state = nn.SGD(model.parameters(), lr=0.1).state_dict()

    def edited(change):
        state = optimizer.state_dict()
        change(state)
        return state

    bad = [
        ({"state": {}}, "keys 'state' and 'param_groups'"),
        (sgd_state, "hyper-parameters"),
        (edited(lambda s: s["param_groups"][0].update(params=[0])), "one index per parameter"),
        (edited(lambda s: s["param_groups"][0].update(lr=-1.0)), "lr must be"),
        (edited(lambda s: s["state"][0].update(exp_avg=np.zeros(3))), "must be a float array"),
        (edited(lambda s: s["state"][0].pop("step")), "keys"),
        (edited(lambda s: s["state"].update({99: s["state"][0]})), "parameter indices"),
    ]
    for state, words in bad:
        with pytest.raises(ValueError, match=words):
            optimizer.load_state_dict(state)
        after = optimizer.state_dict()
        assert after["param_groups"] == good["param_groups"]
        assert all(
            np.array_equal(after["state"][i]["exp_avg"], good["state"][i]["exp_avg"])
            for i in good["state"]
        )


# ----------------------------------------------------------------------------- repr


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("Conv2d", (1, 8, 3), dict(padding=1)),
        ("Conv1d", (4, 6, 2), dict(dilation=3, groups=2, bias=False)),
        ("Conv3d", (2, 4, (2, 3, 1)), dict(stride=2)),
        ("ConvTranspose2d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1, groups=2)),
        ("ConvTranspose1d", (2, 3, 3), dict(dilation=2)),
        ("Linear", (5, 3), dict(bias=False)),
        ("ReLU", (), {}),
    ],
)
def test_module_reprs_are_torchs(name, args, kwargs):
    torch = _torch()
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(
        getattr(torch.nn, name)(*args, **kwargs)
    )


def test_sequential_repr_nests_as_torch():
    torch = _torch()
    ours = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Linear(4, 2)),
    )
    assert repr(ours) == repr(theirs)
    assert repr(ours).startswith(
        "Sequential(\n  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
    )


def test_reprs_of_string_options_losses_and_optimizers():
    layer = nn.Conv2d(2, 3, 3, padding="same", padding_mode="reflect")
    assert repr(layer) == (
        "Conv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), padding='same', padding_mode='reflect')"
    )
    assert repr(nn.Conv1d(2, 3, 3, padding="full")).endswith("padding='full')")
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    params = nn.Linear(2, 2).parameters()
    assert repr(nn.Adam(params, lr=0.01)) == (
        "Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)"
    )
    assert repr(nn.SGD(params, lr=0.1, momentum=0.9)) == (
        "SGD(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)"
    )
    assert repr(nn.MaxPool2d(2)) == "MaxPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert repr(nn.Sequential()) == "Sequential()"


# ----------------------------------------------------------------- channel mismatch


def test_channel_mismatch_names_the_input_and_the_expectation_as_torch():
    torch = _torch()
    x = np.zeros((1, 3, 8, 8))
    with pytest.raises(RuntimeError) as theirs:
        torch.nn.functional.conv2d(torch.zeros(1, 3, 8, 8), torch.zeros(2, 4, 3, 3))
    assert "expected input[1, 3, 8, 8] to have 4 channels, but got 3 channels instead" in str(
        theirs.value
    )
    with pytest.raises(ValueError) as ours:
        convgrad.conv(x, np.zeros((2, 4, 3, 3)))
    assert str(ours.value) == (
        "expected x of shape (1, 3, 8, 8) to have 4 channels (weight.shape[1] * groups = 4 * 1), "
        "but got 3 channels instead"
    )
    with pytest.raises(
        ValueError, match=r"to have 4 channels \(weight.shape\[1\] \* groups = 2 \* 2"
    ):
        convgrad.conv(np.zeros((1, 6, 8, 8)), np.zeros((2, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match=r"expected input_shape \(1, 3, 8, 8\) to have 4 channels"):
        convgrad.conv_input_grad(np.zeros((1, 2, 6, 6)), np.zeros((2, 4, 3, 3)), (1, 3, 8, 8))
    with pytest.raises(ValueError, match="Conv2d with in_channels=4 expected input"):
        nn.Conv2d(4, 2, 3)(x)
