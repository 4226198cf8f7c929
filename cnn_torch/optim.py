"""Keras's Adam and RMSprop update rules as ``torch.optim.Optimizer`` subclasses.

torch's own Adam and RMSprop place epsilon differently (and RMSprop's defaults differ),
so they can only approximate Keras. These two write Keras's equations out, one line
per equation, for the parity tests and for anyone who wants Keras's exact optimizer.
``torch.optim.Adam(eps=1e-7)`` stays the default in ``scripts/train.py``: the gap is
measured in docs/parity-table.md and the README ("What `fit` does, proven").
"""

from __future__ import annotations

import math

import torch


class KerasAdam(torch.optim.Optimizer):
    """Adam as ``keras.optimizers.Adam`` computes it (keras/src/optimizers/adam.py)::

        t      = t + 1
        alpha  = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)   # bias correction in the step size
        m      = m + (g - m) * (1 - beta_1)
        v      = v + (g*g - v) * (1 - beta_2)
        theta  = theta - alpha * m / (sqrt(v) + epsilon)      # epsilon on the uncorrected sqrt(v)

    torch adds epsilon to the bias-corrected ``sqrt(v_hat)`` instead.
    """

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        defaults = {"lr": learning_rate, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, beta_1, beta_2, eps = group["lr"], group["beta_1"], group["beta_2"], group["epsilon"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(param)
                    state["v"] = torch.zeros_like(param)
                grad, m, v = param.grad, state["m"], state["v"]
                state["step"] += 1
                t = state["step"]
                alpha = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
                m.add_((grad - m) * (1 - beta_1))
                v.add_((grad * grad - v) * (1 - beta_2))
                param.sub_(m * alpha / (v.sqrt() + eps))
        return None


class KerasRMSprop(torch.optim.Optimizer):
    """RMSprop as ``keras.optimizers.RMSprop`` computes it (no momentum, not centered)::

        v      = rho * v + (1 - rho) * g*g
        theta  = theta - lr * g / sqrt(v + epsilon)            # epsilon INSIDE the sqrt

    torch's RMSprop adds epsilon outside the sqrt and defaults to lr 0.01, alpha 0.99.
    """

    def __init__(self, params, learning_rate=0.001, rho=0.9, epsilon=1e-7):
        super().__init__(params, {"lr": learning_rate, "rho": rho, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["epsilon"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["v"] = torch.zeros_like(param)
                grad, v = param.grad, state["v"]
                state["step"] += 1
                v.mul_(rho).add_(grad * grad * (1 - rho))
                param.sub_(lr * grad / (v + eps).sqrt())
        return None
