"""Surface normals of a density field: the negated, normalised density gradient.

Density grows towards the inside of an object, so -grad(density) points out of it. Two ways to get
the gradient, shared by the learned field and the analytic ground-truth scenes:
- "analytic": autograd through the density function (exact; with `create_graph=True` a loss on the
  normals trains the network, at the price of a double backward);
- "finite_difference": central differences, six extra density evaluations run as one batched call
  (no double backward; the step also smooths detail finer than `eps`).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

NormalMethod = Literal["analytic", "finite_difference"]

# stable-dreamfusion's finite-difference step for normals; in a [-1, 1] scene it spans about ten cells
# of the finest hash-grid level, which keeps the normals from following hash noise.
DEFAULT_FD_EPS = 1e-2


def normals_from_gradient(density_gradient: Tensor) -> Tensor:
    """Outward unit normals [..., 3] from density gradients [..., 3] (zero where the gradient vanishes)."""
    return F.normalize(-density_gradient, dim=-1, eps=1e-20)


def analytic_density_gradient(density: Tensor, points: Tensor, create_graph: bool = False) -> Tensor:
    """d density / d points [..., 3] by autograd; `density` [...] must have been computed from `points`."""
    (gradient,) = torch.autograd.grad(
        density, points, grad_outputs=torch.ones_like(density), create_graph=create_graph
    )
    return gradient


def finite_difference_points(points: Tensor, eps: float = DEFAULT_FD_EPS) -> Tensor:
    """The six shifted copies [6, ..., 3] of points [..., 3] that central differences evaluate."""
    offsets = eps * torch.cat([torch.eye(3), -torch.eye(3)]).to(points)  # +x +y +z -x -y -z
    return points.unsqueeze(0) + offsets.view(6, *([1] * (points.dim() - 1)), 3)


def finite_difference_gradient(shifted_density: Tensor, eps: float = DEFAULT_FD_EPS) -> Tensor:
    """Central-difference gradient [..., 3] from the density [6, ...] at `finite_difference_points`."""
    return (shifted_density[:3] - shifted_density[3:]).movedim(0, -1) / (2 * eps)


def finite_difference_density_gradient(
    density_fn: Callable[[Tensor], Tensor], points: Tensor, eps: float = DEFAULT_FD_EPS
) -> Tensor:
    """Central-difference density gradient [..., 3], with the six shifted copies in one call."""
    shifted = finite_difference_points(points, eps)
    values = density_fn(shifted.reshape(-1, 3)).reshape(shifted.shape[:-1])
    return finite_difference_gradient(values, eps)


def density_normals(
    density_fn: Callable[[Tensor], Tensor],
    points: Tensor,
    method: NormalMethod = "finite_difference",
    eps: float = DEFAULT_FD_EPS,
    create_graph: bool = False,
) -> Tensor:
    """Outward unit normals [..., 3] of the density field `density_fn` ([N, 3] -> [N]) at points [..., 3].

    `eps` is the finite-difference step (ignored by "analytic"); `create_graph` keeps the analytic
    gradient differentiable so losses on the normals reach the field's parameters (finite differences
    are always differentiable with respect to the parameters).
    """
    if method == "finite_difference":
        return normals_from_gradient(finite_difference_density_gradient(density_fn, points, eps))
    if method != "analytic":
        raise ValueError(f"unknown normal method {method!r}; expected 'analytic' or 'finite_difference'")
    with torch.enable_grad():  # normals are wanted in no_grad evaluation renders too
        leaf = points.detach().requires_grad_(True)
        density = density_fn(leaf.reshape(-1, 3)).reshape(points.shape[:-1])
        gradient = analytic_density_gradient(density, leaf, create_graph=create_graph)
    return normals_from_gradient(gradient)
