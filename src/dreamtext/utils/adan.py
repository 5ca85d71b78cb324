"""Adan, the adaptive Nesterov momentum optimiser (Xie et al. 2022), which stable-dreamfusion trains with.

Per parameter, with g_k the gradient and d_k = g_k - g_{k-1} (0 at the first step):
    m_k = b1 m_{k-1} + (1 - b1) g_k                      (gradient momentum)
    v_k = b2 v_{k-1} + (1 - b2) d_k                      (momentum of the gradient's change)
    n_k = b3 n_{k-1} + (1 - b3) (g_k + b2 d_k)^2         (second moment of the Nesterov gradient)
    p_k = (p_{k-1} - lr (m_hat + b2 v_hat) / (sqrt(n_hat) + eps)) / (1 + lr wd)
with the hats Adam's bias corrections (divided by 1 - b^k). Weight decay is the paper's proximal form.
Betas here are the decay rates of the running averages (the paper writes 1 - beta); the defaults are
the paper's and stable-dreamfusion's (0.98, 0.92, 0.99).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Adan(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"invalid Adan settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                self._update(param, param.grad, self.state[param], lr, b1, b2, b3, eps, wd)
        return loss

    @staticmethod
    def _update(param: Tensor, grad: Tensor, state: dict, lr: float, b1: float, b2: float, b3: float, eps: float, wd: float) -> None:
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_diff"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
            state["previous_grad"] = grad.clone()  # makes d_1 = 0
        state["step"] += 1
        k = float(state["step"])
        diff = grad - state["previous_grad"]
        nesterov = grad + b2 * diff
        state["exp_avg"].lerp_(grad, 1 - b1)
        state["exp_avg_diff"].lerp_(diff, 1 - b2)
        state["exp_avg_sq"].mul_(b3).addcmul_(nesterov, nesterov, value=1 - b3)
        state["previous_grad"].copy_(grad)

        m_hat = state["exp_avg"] / (1 - b1**k)
        v_hat = state["exp_avg_diff"] / (1 - b2**k)
        denominator = (state["exp_avg_sq"] / (1 - b3**k)).sqrt_().add_(eps)
        param.addcdiv_(m_hat + b2 * v_hat, denominator, value=-lr)
        if wd > 0:
            param.div_(1 + lr * wd)
