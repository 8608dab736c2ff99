"""Numeric formats of a deployment: weights, activations and KV cache chosen separately."""

from __future__ import annotations

from dataclasses import dataclass

from hwmodels.errors import InvalidValueError

_BITS = (2, 3, 4, 8, 16, 32)


@dataclass(frozen=True)
class Precision:
    """Bits per element of weights, activations and the KV cache.

    The tensor-core dtype a GEMM runs in follows from them: 8-bit weights *and*
    activations run in fp8 (W8A8, as in FP8 serving); otherwise weights of fewer
    bits than the activations are dequantized on the fly (W4A16, W8A16: the
    GEMM runs at 16-bit, reading the narrow weights; Frantar et al., GPTQ,
    arXiv:2210.17323, and Lin et al., AWQ, arXiv:2306.00978).
    """

    weight_bits: int = 16
    activation_bits: int = 16
    kv_bits: int = 16

    def __post_init__(self) -> None:
        for name in ("weight_bits", "activation_bits", "kv_bits"):
            bits = getattr(self, name)
            if isinstance(bits, bool) or bits not in _BITS:
                raise InvalidValueError(f"{name} must be one of {_BITS}, got {bits!r}")
        if self.activation_bits not in (8, 16, 32):
            raise InvalidValueError(f"activation_bits must be 8, 16 or 32, got {self.activation_bits}")

    @property
    def weight_bytes(self) -> float:
        return self.weight_bits / 8

    @property
    def activation_bytes(self) -> float:
        return self.activation_bits / 8

    @property
    def kv_bytes(self) -> float:
        return self.kv_bits / 8

    @property
    def gemm_dtype(self) -> str:
        """The dtype whose tensor-core peak bounds the GEMMs."""
        if self.activation_bits == 32:
            return "fp32"
        if self.weight_bits == 8 and self.activation_bits == 8:
            return "fp8"
        return "bf16"

    @property
    def attention_dtype(self) -> str:
        """Attention runs on 16-bit operands unless both KV and activations are 8-bit."""
        if self.activation_bits == 32:
            return "fp32"
        return "fp8" if self.kv_bits == 8 and self.activation_bits == 8 else "bf16"
