"""The Keras-exact optimizers' two copies of their equations give the same bits.

``KerasSGD``, ``KerasAdam`` and ``KerasRMSprop`` step with ``update_all`` (``torch._foreach_*``
operations over a group's parameters, as Keras's torch backend runs them) unless
``foreach=False`` picks ``update``, one parameter at a time. ``tests/test_keras_parity.py``
holds the foreach copy to Keras bit for bit; here it is held to the per-parameter copy, in
the cases where a foreach loop could go wrong: parameters that skip a step (Adam's step
counts then differ), several groups with their own learning rates, mixed dtypes, zero
gradients, gradients over six orders of magnitude, and a state_dict handed between the two.
"""

from __future__ import annotations

import copy

import pytest
import torch

from cnn_torch.keras_rules.optim import KerasAdam, KerasRMSprop, KerasSGD

MAKERS = {
    "KerasSGD": lambda groups, foreach: KerasSGD(groups, 0.01, foreach=foreach),
    "KerasSGD momentum": lambda groups, foreach: KerasSGD(groups, 0.01, momentum=0.9, foreach=foreach),
    "KerasSGD nesterov": lambda groups, foreach: KerasSGD(groups, 0.01, momentum=0.9, nesterov=True, foreach=foreach),
    "KerasAdam": lambda groups, foreach: KerasAdam(groups, foreach=foreach),
    "KerasAdam beta_2 0.99": lambda groups, foreach: KerasAdam(groups, 3e-4, beta_2=0.99, foreach=foreach),
    "KerasRMSprop": lambda groups, foreach: KerasRMSprop(groups, foreach=foreach),
}
SHAPES = [(50, 3, 3, 3), (50,), (50, 50, 3, 3), (50,), (50, 1800), (50,), (10, 50), (10,)]  # cifar_model_small


def make_params(seed: int, dtypes=(torch.float32,)) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter((torch.randn(shape, generator=generator) * 0.1).to(dtypes[i % len(dtypes)]))
            for i, shape in enumerate(SHAPES)]


def train(optimizer_name: str, foreach: bool, steps: int = 60, dtypes=(torch.float32,), skip_some=False):
    """``steps`` steps on two parameter groups (the second at half the learning rate); with
    ``skip_some``, the last parameter has no gradient on every third step."""
    params = make_params(0, dtypes)
    groups = [{"params": params[:4]}, {"params": params[4:]}]
    optimizer = MAKERS[optimizer_name](groups, foreach)
    optimizer.param_groups[1]["lr"] *= 0.5
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        scale = 10.0 ** -torch.randint(0, 6, (), generator=generator).item()
        for param in params:
            grad = torch.randn(param.shape, generator=generator) * scale
            grad.view(-1)[::7] = 0.0  # exact zeros: Adam's and RMSprop's sqrt(v) of nothing
            param.grad = grad.to(param.dtype)
        if skip_some and step % 3 == 0:
            params[-1].grad = None
        optimizer.step()
    return params, optimizer


def assert_same_bits(ours, reference):
    for a, b in zip(ours, reference, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b), (a - b).abs().max().item()


@pytest.mark.parametrize("optimizer_name", list(MAKERS))
def test_foreach_step_is_the_per_parameter_step_bit_for_bit(optimizer_name):
    ours, _ = train(optimizer_name, foreach=True)
    reference, _ = train(optimizer_name, foreach=False)
    assert_same_bits(ours, reference)
    assert not torch.equal(ours[0], make_params(0)[0])  # the weights did move


@pytest.mark.parametrize("optimizer_name", ["KerasAdam", "KerasRMSprop", "KerasSGD momentum"])
def test_parameters_that_skip_steps_and_mixed_dtypes(optimizer_name):
    """A parameter without a gradient is left alone (its Adam step count falls behind, so it
    gets its own step size), and float64 parameters keep float64 scalars."""
    for options in ({"skip_some": True}, {"dtypes": (torch.float32, torch.float64)}):
        ours, optimizer = train(optimizer_name, foreach=True, **options)
        reference, _ = train(optimizer_name, foreach=False, **options)
        assert_same_bits(ours, reference)
        if optimizer_name == "KerasAdam" and "skip_some" in options:  # the last parameter: 20 steps behind
            steps = [optimizer.state[param]["step"] for param in ours]
            assert steps[-1] == 40 and set(steps[:-1]) == {60}


@pytest.mark.parametrize("optimizer_name", ["KerasAdam", "KerasRMSprop", "KerasSGD momentum"])
def test_a_state_dict_moves_between_the_two(optimizer_name):
    """A checkpoint written by one copy resumes in the other: the state_dict is the same."""
    params, optimizer = train(optimizer_name, foreach=True, steps=10)
    saved = optimizer.state_dict()
    reference_params, reference = train(optimizer_name, foreach=False, steps=10)
    assert_same_bits(params, reference_params)
    assert saved["param_groups"] == reference.state_dict()["param_groups"]
    for index, state in saved["state"].items():
        for key, value in state.items():
            other = reference.state_dict()["state"][index][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, key

    resumed = MAKERS[optimizer_name]([{"params": reference_params[:4]}, {"params": reference_params[4:]}], False)
    resumed.load_state_dict(copy.deepcopy(saved))  # state_dict() hands out the live tensors
    for param, other in zip(params, reference_params, strict=True):
        grad = torch.full_like(param, 1e-3)
        param.grad, other.grad = grad, grad.clone()
    optimizer.step()
    resumed.step()
    assert_same_bits(params, reference_params)


def test_make_optimizer_adam_is_torch_adam_with_keras_epsilon_fused_where_it_can():
    """``'adam'``: torch's Adam, eps 1e-7, its fused kernel on the CPU (torch >= 2.4): within
    float32 rounding of the unfused loop, and the same bits whatever the thread count."""
    from cnn_torch.keras_rules.optim import make_optimizer

    def run(make, threads: int = 1):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            params = make_params(0)
            optimizer = make(params)
            generator = torch.Generator().manual_seed(1)
            for _ in range(30):
                for param in params:
                    param.grad = torch.randn(param.shape, generator=generator) * 1e-2
                optimizer.step()
            return params, optimizer
        finally:
            torch.set_num_threads(before)

    ours, optimizer = run(lambda params: make_optimizer("adam", params))
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.defaults["eps"] == 1e-7 and optimizer.defaults["lr"] == 1e-3
    if hasattr(torch, "_fused_adam_") and "cpu" in torch.utils._foreach_utils._get_fused_kernels_supported_devices():
        assert optimizer.defaults["fused"]
    unfused, _ = run(lambda params: torch.optim.Adam(params, lr=1e-3, eps=1e-7))
    for a, b in zip(ours, unfused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    two_threads, _ = run(lambda params: make_optimizer("adam", params), threads=2)
    assert_same_bits(ours, two_threads)
