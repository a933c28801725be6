"""The heteroscedastic networks of BOSHNAS (``protran-boshcode.md`` §4), fixed: one
implementation for the surrogate here (:class:`HeteroscedasticNN`) and for BOSHCODE's co-search
(:mod:`edgetran.search.boshcode`).

Three networks (:class:`BoshnasNetworks`) on standardised inputs and a standardised
(log-)target, trained with mini-batches (:func:`train_networks`):

- a *teacher* MLP with dropout predicts the target;
- a *student* MLP learns the teacher's MC-dropout spread: the epistemic uncertainty;
- an NPN (natural-parameter network, weights with means and variances) predicts a mean and a
  variance: the aleatoric uncertainty.

The two spreads combine into one by :func:`combined_spread`. The
reference trained sample by sample on raw integers up to 21804 behind sigmoid outputs, which
saturated; here inputs and targets are standardised and outputs are linear. The surrogate's
``sigma`` is calibrated by the conformal base class.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgetran.seeding import torch_seeded
from edgetran.surrogate.base import Surrogate, SurrogateError

Spread = TypeVar("Spread", torch.Tensor, np.ndarray)


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
        """The output mean and variance of inputs with mean ``mean`` and variance ``var``."""
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
    """A natural-parameter network: a predicted mean and variance per input."""

    def __init__(self, fan_in: int, hidden: int = 32) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [NPNLinear(fan_in, hidden), NPNLinear(hidden, hidden), NPNLinear(hidden, 1)]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted mean and variance of each input row."""
        mean, var = x, torch.zeros_like(x)
        for i, layer in enumerate(self.layers):
            mean, var = layer(mean, var)
            if i < len(self.layers) - 1:
                mean, var = npn_relu(mean, var)
        return mean.squeeze(-1), var.squeeze(-1) + 1e-6


class _Squeezed(nn.Sequential):
    """A head with one output column, returned as ``(n,)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)


def _teacher_head(fan_in: int, dropout: float) -> nn.Module:
    return _Squeezed(
        nn.Linear(fan_in, 64), nn.Softplus(), nn.Dropout(dropout),
        nn.Linear(64, 32), nn.Softplus(), nn.Dropout(dropout), nn.Linear(32, 1),
    )  # fmt: skip


def _student_head(fan_in: int) -> nn.Module:
    # Softplus output: the student predicts a spread, which is positive.
    return _Squeezed(nn.Linear(fan_in, 32), nn.Softplus(), nn.Linear(32, 1), nn.Softplus())


def _branch(fan_in: int, width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(fan_in, width), nn.Softplus(), nn.Linear(width, width), nn.Softplus()
    )


class _Joined(nn.Module):
    """Several inputs, each through its own branch (when there are branches), concatenated,
    then a head."""

    def __init__(self, head: nn.Module, branches: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.head = head
        self.branches = nn.ModuleList(branches)

    def forward(self, *inputs: torch.Tensor):
        if self.branches:
            inputs = tuple(branch(x) for branch, x in zip(self.branches, inputs, strict=True))
        return self.head(torch.cat(inputs, dim=-1))


class BoshnasNetworks(nn.Module):
    """The teacher, the student and the NPN, on the same inputs.

    Args:
        input_dims: the width of each input (one feature matrix, or BOSHCODE's architecture
            and device inputs).
        dropout: the teacher's (the reference's 0.3).
        branch_width: pass each input through its own two-layer branch of this width before
            the teacher and the student join them (BOSHCODE's two-input networks); ``None``:
            they take the inputs concatenated. The NPN always takes the inputs concatenated.
    """

    def __init__(
        self, input_dims: Sequence[int], dropout: float = 0.3, branch_width: int | None = None
    ) -> None:
        super().__init__()
        joined = branch_width * len(input_dims) if branch_width else sum(input_dims)

        def branches() -> list[nn.Module]:
            return [_branch(d, branch_width) for d in input_dims] if branch_width else []

        # Construction order fixes which random numbers initialise which weights.
        self.teacher = _Joined(_teacher_head(joined, dropout), branches())
        self.student = _Joined(_student_head(joined), branches())
        self.npn = _Joined(NPN(sum(input_dims)))

    def predict(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, epistemic std, aleatoric std)`` of the standardised target, each ``(n,)``
        (in eval mode, as :func:`train_networks` leaves them)."""
        _, aleatoric_var = self.npn(*inputs)
        return self.teacher(*inputs), self.student(*inputs), aleatoric_var.sqrt()


def combined_spread(epistemic: Spread, aleatoric: Spread) -> Spread:
    """The one formula wherever epistemic and aleatoric spread combine (this surrogate's
    ``sigma``, BOSHCODE's UCB once the search stalls): ``epistemic + aleatoric``.

    By the law of total variance the predictive standard deviation is
    ``sqrt(epistemic² + aleatoric²)``; the sum bounds it from above, by at most √2. BOSHCODE's
    UCB relies on the wider bound: with the root of summed variances instead it found the best
    pair of the co-search replay table in 9 of 10 seeds instead of 10, after a median 42
    evaluations instead of 41.5 (BENCHMARKS.md, "Co-search on a replay table"). For the
    surrogate the scale is immaterial: conformal calibration rescales ``sigma``. Tensors or
    arrays."""
    return epistemic + aleatoric


@dataclass(frozen=True)
class NetworkTraining:
    """How :func:`train_networks` trains each network: mini-batch AdamW.

    Attributes:
        epochs: passes over the data, for each network (0 leaves them as they are).
        batch_size: mini-batch size.
        learning_rate: the teacher's and the student's.
        npn_learning_rate: the NPN's (``None``: ``learning_rate``).
        weight_decay: AdamW's.
        mc_samples: MC-dropout passes whose spread is the student's target (≥ 2).
    """

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 3e-3
    npn_learning_rate: float | None = None
    weight_decay: float = 1e-4
    mc_samples: int = 10

    def __post_init__(self) -> None:
        for name, low in (("epochs", 0), ("batch_size", 1), ("mc_samples", 2)):
            if getattr(self, name) < low:
                raise SurrogateError(f"{name}={getattr(self, name)}; expected an integer ≥ {low}")
        if min(self.learning_rate, self.npn_rate) <= 0 or self.weight_decay < 0:
            raise SurrogateError(
                f"learning_rate={self.learning_rate}, npn_learning_rate="
                f"{self.npn_learning_rate}, weight_decay={self.weight_decay}; expected rates > 0 "
                "and weight_decay ≥ 0"
            )

    @property
    def npn_rate(self) -> float:
        """The NPN's learning rate (the network's when not set)."""
        return self.learning_rate if self.npn_learning_rate is None else self.npn_learning_rate


def train_networks(
    networks: BoshnasNetworks,
    inputs: Sequence[torch.Tensor],
    target: torch.Tensor,
    training: NetworkTraining,
    generator: torch.Generator | None = None,
) -> None:
    """Train the teacher on ``target``, the student on the teacher's MC-dropout spread and the
    NPN on ``target`` (Gaussian likelihood); leave them in eval mode.

    Warm start: pass networks trained before; each network gets a fresh optimiser. Dropout
    draws from torch's default generator (run this inside
    :func:`edgetran.seeding.torch_seeded`), the mini-batch order from ``generator`` (``None``:
    the default generator too).
    """
    fit = functools.partial(_train, inputs=inputs, training=training, generator=generator)
    fit(networks.teacher, target=target, loss_fn=F.mse_loss, learning_rate=training.learning_rate)
    spread = _mc_dropout_std(networks.teacher, inputs, training.mc_samples)
    fit(networks.student, target=spread, loss_fn=F.mse_loss, learning_rate=training.learning_rate)
    fit(networks.npn, target=target, loss_fn=_gaussian_nll, learning_rate=training.npn_rate)


def _train(net, inputs, target, loss_fn, training, learning_rate, generator) -> None:
    """Mini-batch AdamW; a non-finite loss stops the network at its last finite weights."""
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=learning_rate, weight_decay=training.weight_decay
    )
    net.train()
    try:
        for _ in range(training.epochs):
            for rows in torch.randperm(len(target), generator=generator).split(
                training.batch_size
            ):
                loss = loss_fn(net(*(x[rows] for x in inputs)), target[rows])
                if not torch.isfinite(loss):
                    return
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        net.eval()


def _mc_dropout_std(teacher: nn.Module, inputs, samples: int) -> torch.Tensor:
    teacher.train()  # dropout on
    with torch.no_grad():
        draws = torch.stack([teacher(*inputs) for _ in range(samples)])
    teacher.eval()
    return draws.std(dim=0)


def _gaussian_nll(prediction: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor):
    """The aleatoric loss: Gaussian negative log-likelihood, up to a constant."""
    mean, var = prediction
    return 0.5 * ((mean - target) ** 2 / var + torch.log(var)).mean()


@dataclass
class _FittedNetworks:
    """The three networks and the standardisation they were trained with."""

    networks: BoshnasNetworks
    x_mean: np.ndarray
    x_std: np.ndarray
    z_mean: float
    z_std: float


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

    def _fit_core(self, X, z, rng):
        training = NetworkTraining(
            self.epochs, self.batch_size, self.learning_rate, mc_samples=self.mc_samples
        )
        seed = int(rng.integers(2**31 - 1))
        x_mean, x_std = X.mean(axis=0), X.std(axis=0)
        # A feature constant in training (e.g. a layer slot no training model uses) keeps its
        # raw scale instead of exploding by 1/1e-8 on a test point that uses it.
        x_std = np.where(x_std < 1e-6, 1.0, x_std)
        z_mean, z_std = float(z.mean()), float(z.std() + 1e-8)
        Xt = torch.tensor(np.clip((X - x_mean) / x_std, -10, 10), dtype=torch.float32)
        zt = torch.tensor((z - z_mean) / z_std, dtype=torch.float32)
        with torch_seeded(seed):
            networks = BoshnasNetworks((X.shape[1],), self.dropout)
            train_networks(networks, (Xt,), zt, training, torch.Generator().manual_seed(seed))
        return _FittedNetworks(networks, x_mean, x_std, z_mean, z_std)

    def _predict_core(self, core: _FittedNetworks, X):
        Xt = torch.tensor(np.clip((X - core.x_mean) / core.x_std, -10, 10), dtype=torch.float32)
        with torch.no_grad():
            mean, epistemic, aleatoric = core.networks.predict(Xt)
        sigma = combined_spread(epistemic, aleatoric).numpy()
        return mean.numpy() * core.z_std + core.z_mean, np.maximum(sigma, 1e-6) * core.z_std
