"""BOSHCODE: a two-input heteroscedastic surrogate with gradient-based acquisition (GOBI).

This is ``BoshcodeSettings(surrogate="networks")``, the reference's design; the default
surrogate is :mod:`edgetran.search.forests` (measured on the benchmark suite, issue 14).

Reference: ``protran-boshcode.md`` §4–5. The surrogate is BOSHNAS's teacher / student / NPN
trio of :mod:`edgetran.surrogate.nn` (networks and training loop), on two inputs: the
architecture (from :mod:`edgetran.search.encoding`) and the device (one-hot, or features that
describe the device, so a new device needs no new input width), each through its own branch
before the teacher and the student join them:

- a **teacher** with dropout (the mean),
- a **student** trained on the teacher's MC-dropout spread (epistemic uncertainty),
- an **NPN** (natural-parameter network) whose output variance is the aleatoric uncertainty.

Fixes against the reference: inputs lie in [0, 1] and targets are standardised (the reference
fed raw integers up to 21804 into sigmoids); training uses mini-batches, not one sample at a
time; a NaN loss stops a network instead of being written into its history. Each fit is seeded
by the seed and the step, and leaves torch's global generator as it found it.

Each proposal (:meth:`Boshcode.propose`): with probability α the most (epistemically)
uncertain candidate of the pool, with probability β a random one, otherwise GOBI: K starts
drawn from the pool, inputs relaxed to [0, 1] and moved by gradient ascent (Adam, or the
reference's AdaHessian) on the UCB ``mean + k·σ``, then projected to the nearest pool candidate
(mean |Δx| over both inputs, as in the reference). ``σ`` is epistemic; once the best value has
not improved for ``patience`` evaluations it is
:func:`edgetran.surrogate.nn.combined_spread` of the epistemic and aleatoric ones.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from edgetran.search.settings import BoshcodeSettings
from edgetran.seeding import torch_seeded
from edgetran.surrogate.nn import BoshnasNetworks, combined_spread, train_networks

#: The reference's AdaHessian settings for second-order GOBI (its cosine schedule is left out).
ADAHESSIAN_LR = 0.5
ADAHESSIAN_BETAS = (0.9, 0.999)
ADAHESSIAN_EPS = 1e-4


#: Width of the architecture and device branches that the teacher and the student join.
BRANCH_WIDTH = 32


# -- the surrogate --------------------------------------------------------------------------
class Boshcode:
    """The BOSHCODE surrogate and proposer.

    ``fit`` (warm-started after the first call) on arrays ``xa (n, d_a)``, ``xd (n, d_d)`` in
    [0, 1] and targets ``y (n,)`` to maximise; ``propose`` returns an index into a pool.
    """

    def __init__(self, settings: BoshcodeSettings | None = None, seed: int = 0) -> None:
        self.settings = BoshcodeSettings() if settings is None else settings
        self.seed = seed

    # -- fitting --------------------------------------------------------------------------------
    def fit(self, xa: np.ndarray, xd: np.ndarray, y: np.ndarray, step: int = 0) -> Boshcode:
        """Fit (warm-started after the first call) on ``xa``, ``xd`` and ``y`` to maximise."""
        xa_t, xd_t = _tensor(xa), _tensor(xd)
        self.y_mean_, self.y_std_ = float(np.mean(y)), float(np.std(y)) or 1.0
        z = _tensor((y - self.y_mean_) / self.y_std_)
        warm = hasattr(self, "networks_")
        with torch_seeded(self.seed * 100_003 + step):
            if not warm:
                self.networks_ = BoshnasNetworks(
                    (xa.shape[1], xd.shape[1]), branch_width=BRANCH_WIDTH
                )
            train_networks(self.networks_, (xa_t, xd_t), z, self.settings.training(warm))
        return self

    # -- prediction -----------------------------------------------------------------------------
    def predict(self, xa: np.ndarray, xd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, epistemic std, aleatoric std)`` in target units, each ``(n,)``."""
        with torch.no_grad():
            mean, epistemic, aleatoric = self._predict_t(_tensor(xa), _tensor(xd))
        return mean.numpy(), epistemic.numpy(), aleatoric.numpy()

    def _predict_t(self, xa: torch.Tensor, xd: torch.Tensor):
        mean, epistemic, aleatoric = self.networks_.predict(xa, xd)
        return mean * self.y_std_ + self.y_mean_, epistemic * self.y_std_, aleatoric * self.y_std_

    def acquisition(self, xa: torch.Tensor, xd: torch.Tensor, aleatoric: bool) -> torch.Tensor:
        """UCB ``mean + k·σ``: ``σ`` epistemic, or with ``aleatoric`` the combined spread."""
        mean, epistemic, noise = self._predict_t(xa, xd)
        sigma = combined_spread(epistemic, noise) if aleatoric else epistemic
        return mean + self.settings.ucb_k * sigma

    # -- proposing ------------------------------------------------------------------------------
    def propose(
        self, pool_a: np.ndarray, pool_d: np.ndarray, rng: np.random.Generator, aleatoric: bool
    ) -> tuple[int, str]:
        """Index into the pool ``(pool_a (m, d_a), pool_d (m, d_d))`` and how it was chosen."""
        p = rng.random()
        if p < self.settings.alpha:
            _, epistemic, _ = self.predict(pool_a, pool_d)
            return int(np.argmax(epistemic)), "uncertainty"
        if p < self.settings.alpha + self.settings.beta:
            return int(rng.integers(len(pool_a))), "random"
        return self.gobi(pool_a, pool_d, rng, aleatoric), "gobi"

    def gobi(self, pool_a, pool_d, rng, aleatoric: bool) -> int:
        """Gradient ascent on the UCB from K pool starts, projected back to the pool."""
        starts = rng.choice(
            len(pool_a), size=min(self.settings.starts, len(pool_a)), replace=False
        )
        xa = _tensor(pool_a[starts]).requires_grad_(True)
        xd = _tensor(pool_d[starts]).requires_grad_(True)
        self.networks_.requires_grad_(False)
        objective = functools.partial(self.acquisition, aleatoric=aleatoric)
        if self.settings.second_order:
            seed = int(rng.integers(2**31))
            _adahessian_ascent(objective, [xa, xd], self.settings.gobi_steps, seed)
        else:
            _adam_ascent(objective, [xa, xd], self.settings.gobi_steps, self.settings.gobi_lr)
        self.networks_.requires_grad_(True)
        picks = sorted({nearest_candidate(pool_a, pool_d, a, d) for a, d in zip(
            xa.detach().numpy(), xd.detach().numpy(), strict=True)})  # fmt: skip
        with torch.no_grad():
            scores = self.acquisition(_tensor(pool_a[picks]), _tensor(pool_d[picks]), aleatoric)
        return picks[int(torch.argmax(scores))]


def _adam_ascent(objective, inputs: list[torch.Tensor], steps: int, lr: float) -> None:
    """First-order GOBI: Adam on the inputs, kept in [0, 1]."""
    optimiser = torch.optim.Adam(inputs, lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (-objective(*inputs).sum()).backward()
        optimiser.step()
        with torch.no_grad():
            for x in inputs:
                x.clamp_(0, 1)


def _adahessian_ascent(objective, inputs: list[torch.Tensor], steps: int, seed: int) -> None:
    """Second-order GOBI, as the reference: AdaHessian on the inputs — Adam whose second moment
    is the square of Hutchinson's estimate of the Hessian diagonal, ``z ⊙ (H z)`` with
    Rademacher ``z`` — at the reference's step size, kept in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    first = [torch.zeros_like(x) for x in inputs]
    second = [torch.zeros_like(x) for x in inputs]
    for t in range(1, steps + 1):
        grads = torch.autograd.grad(-objective(*inputs).sum(), inputs, create_graph=True)
        probes = [torch.randint(0, 2, x.shape, generator=generator) * 2.0 - 1 for x in inputs]
        products = torch.autograd.grad(grads, inputs, grad_outputs=probes, allow_unused=True)
        with torch.no_grad():
            for x, g, z, hz, m, v in zip(inputs, grads, probes, products, first, second,
                                         strict=True):  # fmt: skip
                curvature = z * hz if hz is not None else torch.zeros_like(x)
                m.mul_(ADAHESSIAN_BETAS[0]).add_(g, alpha=1 - ADAHESSIAN_BETAS[0])
                v.mul_(ADAHESSIAN_BETAS[1]).addcmul_(curvature, curvature,
                                                     value=1 - ADAHESSIAN_BETAS[1])  # fmt: skip
                m_hat = m / (1 - ADAHESSIAN_BETAS[0] ** t)
                v_hat = v / (1 - ADAHESSIAN_BETAS[1] ** t)
                x.sub_(ADAHESSIAN_LR * m_hat / (v_hat.sqrt() + ADAHESSIAN_EPS)).clamp_(0, 1)


def nearest_candidate(pool_a: np.ndarray, pool_d: np.ndarray, a: np.ndarray, d: np.ndarray) -> int:
    """Index of the pool candidate nearest to ``(a, d)`` by the reference projection's distance:
    mean |Δx_arch| + mean |Δx_device|."""
    distance = np.abs(pool_a - a).mean(axis=1) + np.abs(pool_d - d).mean(axis=1)
    return int(np.argmin(distance))


def _tensor(x: np.ndarray | Sequence) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32)
