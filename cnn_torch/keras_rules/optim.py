"""Keras's SGD, Adam and RMSprop update rules as ``torch.optim.Optimizer`` subclasses.

torch's own Adam and RMSprop place epsilon differently (and RMSprop's defaults differ),
so they can only approximate Keras; torch's SGD with momentum keeps its velocity without
the learning rate in it. These classes write Keras's equations out, one line per
equation, for the parity tests and for anyone who wants Keras's exact optimizer.
``torch.optim.Adam(eps=1e-7)`` stays the default of ``make_optimizer`` (below; its fused
kernel where torch has one): the gap is measured in docs/parity-table.md and the README
("What `fit` does, proven").

"Exact" means: the same float32 operations, in the same order, as Keras 3 on its torch
backend (``keras/src/backend/torch/optimizers/torch_sgd.py``, ``torch_adam.py`` and
``torch_rmsprop.py``, which replace the backend-neutral ``keras/src/optimizers/*.py`` there).
Given the same gradients, one step of ours and one of Keras's give bit-identical weights
(``tests/test_keras_parity.py`` checks it). Two details matter for that:

* Every scalar is a tensor of the parameter's dtype, as Keras computes it: the step
  count ``t``, ``beta**t`` and Adam's step size ``alpha``. In float32, ``1 - beta_2**t``
  loses digits (``beta_2**t`` is close to 1), so Keras's ``alpha`` sits about 50 float32
  ulps (up to 160, over the first 2000 steps) from the exact value. Computed in Python's
  float64 instead, ``alpha`` is nearly exact, which is *not* what Keras does: every
  weight's every step then differs by ~3e-6 relative, and training grows that into a
  visible drift (1.6e-4 in ``val_loss`` after three epochs of CIFAR-sized images, issue #11).
* ``m = beta_1*m + (1 - beta_1)*g`` and ``m = m + (g - m)*(1 - beta_1)`` are the same
  number on paper but round differently. We write the form Keras's torch backend runs
  (torch's ``add_(x, alpha=a)`` is one fused multiply-add, rounded once). Keras on
  TensorFlow runs the backend-neutral form, each operation rounded on its own: given the
  same gradients, its weights land a few float32 ulps from ours after 150 steps (measured
  for all three), as its kernels' rounding differs anyway (docs/parity-table.md).

Each class writes its equations twice: ``update``, one parameter at a time (the reading
copy), and ``update_all``, all of a group's parameters at once with ``torch._foreach_*``
operations, as Keras's torch backend runs them. The second is what ``step`` uses (unless
``foreach=False``): the same operations in the same order, so the same bits
(``tests/test_optim_foreach.py``), with one Python call per operation instead of one per
operation and parameter, and the step size computed once per step rather than per parameter.
"""

from __future__ import annotations

import torch

from cnn_torch.errors import UserError


def _scalar(value, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a 0-d tensor of ``like``'s dtype and device (Keras: ``ops.cast``)."""
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


class _PerParameterRule(torch.optim.Optimizer):
    """The loop the three optimizers below share: the parameters that have a gradient get the
    optimizer's own equations, ``update_all`` for a group's parameters at once (``foreach=True``,
    the default) or ``update(param, grad, state, group)`` for one at a time."""

    def __init__(self, params, defaults: dict, foreach: bool = True) -> None:
        super().__init__(params, defaults)
        # an attribute, not a group option: checkpoints keep the state_dict they always had
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            if not self.foreach:
                for param in params:
                    self.update(param, param.grad, self.state[param], group)
                continue
            # one foreach call covers tensors that share a dtype and a device (and, for Adam, a step count)
            buckets: dict[tuple, list[torch.Tensor]] = {}
            for param in params:
                buckets.setdefault(self._bucket(param, self.state[param]), []).append(param)
            for bucket in buckets.values():
                grads, states = [param.grad for param in bucket], [self.state[param] for param in bucket]
                self.update_all(bucket, grads, states, group)
        return loss

    @staticmethod
    def _bucket(param: torch.Tensor, state: dict) -> tuple:
        return param.dtype, param.device

    def update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError

    def update_all(self, params: list, grads: list, states: list, group: dict) -> None:
        raise NotImplementedError


class KerasSGD(_PerParameterRule):
    """SGD as ``keras.optimizers.SGD`` computes it::

        velocity = momentum * velocity - lr * g               # (only with momentum > 0)
        theta    = theta + velocity
        theta    = theta - lr * g + momentum * velocity       # instead, with nesterov=True
        theta    = theta - lr * g                             # momentum == 0

    Without momentum it is ``torch.optim.SGD`` exactly. With momentum, torch keeps the
    velocity without the learning rate in it (``b = momentum*b + g``, ``theta -= lr*b``):
    the same numbers on paper, one rounding apart per step in float32.
    """

    def __init__(self, params, learning_rate=0.01, momentum=0.0, nesterov=False, foreach=True):
        super().__init__(params, {"lr": learning_rate, "momentum": momentum, "nesterov": nesterov}, foreach)

    def update(self, param, grad, state, group):
        lr, momentum = group["lr"], group["momentum"]
        if momentum == 0:
            param.add_(grad, alpha=-lr)
            return
        if not state:
            state["velocity"] = torch.zeros_like(param)
        velocity = state["velocity"]
        velocity.mul_(momentum).add_(grad, alpha=-lr)
        if group["nesterov"]:
            param.add_(grad, alpha=-lr).add_(velocity, alpha=momentum)
        else:
            param.add_(velocity)

    def update_all(self, params, grads, states, group):  # update's lines, for all params at once
        lr, momentum = group["lr"], group["momentum"]
        if momentum == 0:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        for param, state in zip(params, states, strict=True):
            if not state:
                state["velocity"] = torch.zeros_like(param)
        velocities = [state["velocity"] for state in states]
        torch._foreach_mul_(velocities, momentum)
        torch._foreach_add_(velocities, grads, alpha=-lr)
        if group["nesterov"]:
            torch._foreach_add_(params, grads, alpha=-lr)
            torch._foreach_add_(params, velocities, alpha=momentum)
        else:
            torch._foreach_add_(params, velocities)


class KerasAdam(_PerParameterRule):
    """Adam as ``keras.optimizers.Adam`` computes it::

        t      = t + 1                                        # a float tensor, as Keras casts it
        alpha  = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)   # bias correction in the step size
        m      = beta_1 * m + (1 - beta_1) * g
        v      = beta_2 * v + (1 - beta_2) * g*g
        theta  = theta - (m * alpha) / (sqrt(v) + epsilon)    # epsilon on the uncorrected sqrt(v)

    torch's Adam adds epsilon to the bias-corrected ``sqrt(v_hat)`` instead, so
    ``torch.optim.Adam(eps=1e-7)`` is a slightly different optimizer.

    Keras counts steps once per optimizer (``optimizer.iterations``); we count per
    parameter, as torch's optimizers do. The two agree whenever every parameter gets a
    gradient at every step, as in the lesson's models.
    """

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, foreach=True):
        defaults = {"lr": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon}
        super().__init__(params, defaults, foreach)

    def update(self, param, grad, state, group):
        beta_1, beta_2, epsilon = group["beta_1"], group["beta_2"], group["epsilon"]  # Python floats
        if not state:
            state["step"] = 0
            state["m"] = torch.zeros_like(param)  # first moment: running mean of g
            state["v"] = torch.zeros_like(param)  # second moment: running mean of g*g
        m, v = state["m"], state["v"]
        state["step"] += 1

        alpha = self._step_size(group, state["step"], param)

        m.mul_(beta_1).add_(grad, alpha=1 - beta_1)
        v.mul_(beta_2).add_(grad * grad, alpha=1 - beta_2)

        param.sub_((m * alpha) / (v.sqrt() + epsilon))

    @staticmethod
    def _bucket(param, state):  # one step size per bucket: the parameters must share their step count
        return param.dtype, param.device, state.get("step", 0)

    def update_all(self, params, grads, states, group):  # update's lines, for all params at once
        beta_1, beta_2, epsilon = group["beta_1"], group["beta_2"], group["epsilon"]
        for param, state in zip(params, states, strict=True):
            if not state:
                state["step"] = 0
                state["m"] = torch.zeros_like(param)
                state["v"] = torch.zeros_like(param)
            state["step"] += 1
        m, v = [state["m"] for state in states], [state["v"] for state in states]

        alpha = self._step_size(group, states[0]["step"], params[0])  # the same for the whole bucket

        torch._foreach_mul_(m, beta_1)
        torch._foreach_add_(m, grads, alpha=1 - beta_1)
        torch._foreach_mul_(v, beta_2)
        torch._foreach_add_(v, torch._foreach_mul(grads, grads), alpha=1 - beta_2)

        denominators = torch._foreach_sqrt(v)
        torch._foreach_add_(denominators, epsilon)
        steps = torch._foreach_mul(m, alpha)
        torch._foreach_div_(steps, denominators)
        torch._foreach_sub_(params, steps)

    @staticmethod
    def _step_size(group: dict, step: int, param: torch.Tensor) -> torch.Tensor:
        """``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``, every number in it a
        tensor of the parameter's dtype (float32), computed in Keras's order."""
        lr = _scalar(group["lr"], param)
        t = _scalar(step, param)  # Keras: ops.cast(iterations + 1, dtype)
        beta_1_power = torch.pow(_scalar(group["beta_1"], param), t)
        beta_2_power = torch.pow(_scalar(group["beta_2"], param), t)
        return lr * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)


class KerasRMSprop(_PerParameterRule):
    """RMSprop as ``keras.optimizers.RMSprop`` computes it (no momentum, not centered)::

        v      = rho * v + (1 - rho) * g*g
        theta  = theta - (g * lr) / sqrt(v + epsilon)         # epsilon INSIDE the sqrt

    torch's RMSprop adds epsilon outside the sqrt and defaults to lr 0.01, alpha 0.99.
    """

    def __init__(self, params, learning_rate=0.001, rho=0.9, epsilon=1e-7, foreach=True):
        super().__init__(params, {"lr": learning_rate, "rho": rho, "epsilon": epsilon}, foreach)

    def update(self, param, grad, state, group):
        rho, epsilon = group["rho"], group["epsilon"]
        if not state:
            state["step"] = 0
            state["v"] = torch.zeros_like(param)  # running mean of g*g
        v = state["v"]
        state["step"] += 1

        lr = _scalar(group["lr"], param)  # Keras: ops.cast(learning_rate, dtype)

        # The running mean of g*g: decay, then add the new gradient's share.
        v.mul_(rho).add_(grad * grad, alpha=1 - rho)

        # The step: lr times g, over sqrt(v + epsilon).
        param.sub_((grad * lr) / (v + epsilon).sqrt())

    def update_all(self, params, grads, states, group):  # update's lines, for all params at once
        rho, epsilon = group["rho"], group["epsilon"]
        for param, state in zip(params, states, strict=True):
            if not state:
                state["step"] = 0
                state["v"] = torch.zeros_like(param)
            state["step"] += 1
        v = [state["v"] for state in states]

        lr = _scalar(group["lr"], params[0])

        torch._foreach_mul_(v, rho)
        torch._foreach_add_(v, torch._foreach_mul(grads, grads), alpha=1 - rho)

        denominators = torch._foreach_add(v, epsilon)
        torch._foreach_sqrt_(denominators)
        steps = torch._foreach_mul(grads, lr)
        torch._foreach_div_(steps, denominators)
        torch._foreach_sub_(params, steps)


# Keras's default learning rate for each optimizer (torch's defaults differ for RMSprop).
KERAS_LEARNING_RATES = {"adam": 0.001, "sgd": 0.01, "rmsprop": 0.001}


def make_optimizer(name: str, parameters, learning_rate: float | None = None) -> torch.optim.Optimizer:
    """``compile(optimizer='adam')`` etc., with Keras's defaults."""
    name = name.lower()  # Keras takes 'Adam' and 'adam' alike
    if name not in KERAS_LEARNING_RATES:
        raise UserError(f"unknown optimizer {name!r}: choose one of {', '.join(KERAS_LEARNING_RATES)}")
    lr = KERAS_LEARNING_RATES[name] if learning_rate is None else learning_rate
    if not lr > 0:  # the command line checks --learning-rate before this, in its own words
        raise UserError(f"learning_rate must be positive, got {lr}: pass e.g. learning_rate=0.001")
    if name == "adam":
        return _torch_adam(list(parameters), lr)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr)
    return KerasRMSprop(parameters, learning_rate=lr)  # torch's RMSprop puts epsilon elsewhere


def _torch_adam(parameters: list, lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam`` with Keras's epsilon (see the docs for the rest), fused: each weight
    updated in one vectorised pass instead of about eight separate operations. The same
    equations, rounded within an ulp of the unfused loop; its weights do not depend on the
    thread count. Measured on AMD Zen 4: the step 2.5x faster, an epoch 4% (BENCHMARKS.md).
    torch before 2.4 has no fused kernel for CPU weights: the unfused loop, as before."""
    try:
        return torch.optim.Adam(parameters, lr=lr, eps=1e-7, fused=True)
    except RuntimeError:  # "`fused=True` requires all the params to be ... of supported devices"
        return torch.optim.Adam(parameters, lr=lr, eps=1e-7)
