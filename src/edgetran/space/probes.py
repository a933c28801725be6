"""The probe set: twelve fixed architectures that fingerprint a new device.

``edgetran profile --probe`` measures these first on a new device. Chosen once (issue 19) to
span what moves a device's costs: depth (2–12 layers), width (128–768), every head operation
(attention, weighted-multiplicative attention, DFT, DCT and the three convolutions, alone and
mixed), feed-forward depth 1–3 and width 256–4096, and two heterogeneous stacks; their FLOPs at
1 × 128 run from 0.09 to 15 GFLOP. Every probe lies on the
reference grid. The set never changes: a change would make probe measurements of different
devices incomparable, so a new set would get new names.
"""

from __future__ import annotations

from edgetran.space.architecture import Architecture, Layer


def _layer(hidden: int, ops: tuple[str, ...], ff: tuple[int, ...]) -> Layer:
    return Layer(hidden=hidden, ops=ops, head_dim=hidden // len(ops), ff=ff)


def _stack(*layers: Layer) -> Architecture:
    return Architecture(tuple(layers))


PROBES: tuple[Architecture, ...] = (
    _stack(*[_layer(128, ("sa_sdp",) * 2, (256,))] * 2),
    _stack(*[_layer(256, ("c_5",) * 4, (1024,))] * 2),
    _stack(*[_layer(128, ("l_dct",) * 2, (512, 256))] * 4),
    _stack(*[_layer(256, ("l_dft",) * 4, (1024,))] * 4),
    _stack(*[_layer(512, ("sa_wma",) * 8, (2048,))] * 4),
    _stack(*[_layer(256, ("sa_sdp", "sa_wma", "l_dft", "c_9"), (1024,))] * 6),
    _stack(*[_layer(512, ("sa_sdp",) * 8, (2048, 1024))] * 6),
    _stack(*[_layer(256, ("l_dft", "l_dct", "c_5", "c_13"), (512,))] * 8),
    _stack(*[_layer(768, ("sa_sdp",) * 12, (3072,))] * 8),
    _stack(*[_layer(512, ("c_13",) * 8, (4096,))] * 10),
    _stack(*[_layer(128, ("sa_sdp", "l_dft"), (256, 256, 256))] * 12),
    _stack(
        *[_layer(768, ("sa_sdp",) * 8 + ("sa_wma",) * 4, (3072,))] * 4,
        *[_layer(512, ("sa_sdp",) * 4 + ("l_dct",) * 4, (2048,))] * 4,
        *[_layer(256, ("c_9",) * 2 + ("l_dft",) * 2, (1024,))] * 4,
    ),
)
#: Hashes of :data:`PROBES`, to recognise probe measurements in a store or file.
PROBE_HASHES = frozenset(arch.hash for arch in PROBES)
