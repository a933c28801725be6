"""The heteroscedastic neural surrogate of BOSHNAS (``protran-boshcode.md`` §4), fixed.

Three networks on standardised inputs and a standardised (log-)target, trained with
mini-batches:

- a *teacher* MLP with dropout predicts the target;
- a *student* MLP learns the teacher's MC-dropout spread: the epistemic uncertainty;
- an NPN (natural-parameter network, weights with means and variances) predicts a mean and a
  variance: the aleatoric uncertainty.

The reference trained sample by sample on raw integers up to 21804 behind sigmoid outputs, which
saturated; here inputs and targets are standardised and outputs are linear.
``sigma = sqrt(epistemic² + aleatoric)`` is calibrated by the conformal base class.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgetran.surrogate.base import Surrogate


class NPNLinear(nn.Module):
    """A linear layer whose weights are Gaussian: propagates a mean and a variance."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        scale = math.sqrt(6 / (fan_in + fan_out))
        self.weight_mean = nn.Parameter((torch.rand(fan_in, fan_out) - 0.5) * 2 * scale)
        # Variances are softplus of these; start small (the reference's 0.01 · scale · U).
        self.weight_rho = nn.Parameter(
            torch.log(torch.expm1(0.01 * scale * torch.rand(fan_in, fan_out) + 1e-6))
        )
        self.bias_mean = nn.Parameter(torch.zeros(fan_out))
        self.bias_rho = nn.Parameter(torch.full((fan_out,), -10.0))

    def forward(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_var, b_var = F.softplus(self.weight_rho), F.softplus(self.bias_rho)
        out_mean = mean @ self.weight_mean + self.bias_mean
        out_var = var @ w_var + var @ self.weight_mean**2 + mean**2 @ w_var + b_var
        return out_mean, out_var


def npn_relu(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Moment-matched ReLU of a Gaussian (Φ approximated by a sigmoid, as the reference)."""
    std = torch.sqrt(var + 1e-8)
    ratio = mean / std
    cdf = torch.sigmoid(math.sqrt(8 / math.pi) * ratio)
    pdf = torch.exp(-0.5 * ratio**2) / math.sqrt(2 * math.pi)
    out_mean = cdf * mean + std * pdf
    out_var = cdf * (mean**2 + var) + mean * std * pdf - out_mean**2
    return out_mean, torch.clamp(out_var, min=1e-8)


class NPN(nn.Module):
    def __init__(self, fan_in: int, hidden: int = 32) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [NPNLinear(fan_in, hidden), NPNLinear(hidden, hidden), NPNLinear(hidden, 1)]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = x, torch.zeros_like(x)
        for i, layer in enumerate(self.layers):
            mean, var = layer(mean, var)
            if i < len(self.layers) - 1:
                mean, var = npn_relu(mean, var)
        return mean.squeeze(-1), var.squeeze(-1) + 1e-6


def _mlp(fan_in: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(fan_in, 64),
        nn.Softplus(),
        nn.Dropout(dropout),
        nn.Linear(64, 32),
        nn.Softplus(),
        nn.Dropout(dropout),
        nn.Linear(32, 1),
    )


class _Fitted:
    """The three networks and the standardisation they were trained with."""

    def __init__(self, teacher, student, npn, x_mean, x_std, z_mean, z_std, mc_samples):
        self.teacher, self.student, self.npn = teacher, student, npn
        self.x_mean, self.x_std, self.z_mean, self.z_std = x_mean, x_std, z_mean, z_std
        self.mc_samples = mc_samples


class HeteroscedasticNN(Surrogate):
    """Teacher (dropout MLP) + student (epistemic) + NPN (aleatoric), mini-batch AdamW.

    Args:
        epochs: training epochs of each network.
        batch_size: mini-batch size.
        dropout: teacher dropout (the reference's 0.3).
        mc_samples: MC-dropout passes that define the student's target.
        log_target, calibration_folds, random_state: see :class:`Surrogate`.
    """

    def __init__(
        self,
        epochs: int = 100,
        batch_size: int = 32,
        dropout: float = 0.3,
        mc_samples: int = 10,
        learning_rate: float = 3e-3,
        log_target: bool = True,
        calibration_folds: int = 5,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(log_target, calibration_folds, random_state)
        self.epochs = epochs
        self.batch_size = batch_size
        self.dropout = dropout
        self.mc_samples = mc_samples
        self.learning_rate = learning_rate

    def _train(self, net: nn.Module, X: torch.Tensor, loss_fn, generator: torch.Generator) -> None:
        optimiser = torch.optim.AdamW(net.parameters(), lr=self.learning_rate, weight_decay=1e-4)
        net.train()
        for _ in range(self.epochs):
            for rows in torch.randperm(len(X), generator=generator).split(self.batch_size):
                optimiser.zero_grad()
                loss_fn(net, rows).backward()
                optimiser.step()
        net.eval()

    def _fit_core(self, X, z, rng):
        seed = int(rng.integers(2**31 - 1))
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        x_mean, x_std = X.mean(axis=0), X.std(axis=0)
        # A feature constant in training (e.g. a layer slot no training model uses) keeps its
        # raw scale instead of exploding by 1/1e-8 on a test point that uses it.
        x_std = np.where(x_std < 1e-6, 1.0, x_std)
        z_mean, z_std = float(z.mean()), float(z.std() + 1e-8)
        Xt = torch.tensor(np.clip((X - x_mean) / x_std, -10, 10), dtype=torch.float32)
        zt = torch.tensor((z - z_mean) / z_std, dtype=torch.float32)
        teacher = _mlp(X.shape[1], self.dropout)
        self._train(teacher, Xt, lambda n, r: F.mse_loss(n(Xt[r]).squeeze(-1), zt[r]), generator)
        teacher.train()  # MC dropout
        with torch.no_grad():
            spread = torch.stack([teacher(Xt).squeeze(-1) for _ in range(self.mc_samples)]).std(0)
        teacher.eval()
        student = nn.Sequential(
            nn.Linear(X.shape[1], 32), nn.Softplus(), nn.Linear(32, 1), nn.Softplus()
        )
        self._train(
            student, Xt, lambda n, r: F.mse_loss(n(Xt[r]).squeeze(-1), spread[r]), generator
        )
        npn = NPN(X.shape[1])

        def aleatoric_loss(net, rows):
            mean, var = net(Xt[rows])
            return 0.5 * ((mean - zt[rows]) ** 2 / var + torch.log(var)).mean()

        self._train(npn, Xt, aleatoric_loss, generator)
        return _Fitted(teacher, student, npn, x_mean, x_std, z_mean, z_std, self.mc_samples)

    def _predict_core(self, core: _Fitted, X):
        Xt = torch.tensor(np.clip((X - core.x_mean) / core.x_std, -10, 10), dtype=torch.float32)
        with torch.no_grad():
            mean = core.teacher(Xt).squeeze(-1)
            epistemic = core.student(Xt).squeeze(-1)
            _, aleatoric_var = core.npn(Xt)
        sigma = torch.sqrt(epistemic**2 + aleatoric_var)
        return (
            mean.numpy() * core.z_std + core.z_mean,
            np.maximum(sigma.numpy(), 1e-6) * core.z_std,
        )
