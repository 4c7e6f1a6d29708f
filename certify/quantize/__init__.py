"""Quantizers: group-wise round-to-nearest (:mod:`.rtn`) and Hessian-aware GPTQ (:mod:`.gptq`).

Both produce :class:`QuantizedTensor` codes of one form (group-wise integer codes, log-grid
scale codes, integer zero points; docs/FORMAT.md, "Quantized tensor payload"), so the
entropy coder, the container and the decoder do not depend on the quantizer.
"""

from __future__ import annotations

from certify.quantize.rtn import (
    FRACTIONAL_POWERS,
    MAX_BITS,
    MAX_GROUP_SIZE,
    MAX_SCALE_EXPONENT,
    MIN_BITS,
    MIN_SCALE_EXPONENT,
    SCALE_CODES,
    SCALE_STEPS_PER_OCTAVE,
    QuantizedTensor,
    dequantize,
    group_count,
    quantize_tensor,
    scale_grid,
    validate_settings,
)

__all__ = [
    "FRACTIONAL_POWERS",
    "MAX_BITS",
    "MAX_GROUP_SIZE",
    "MAX_SCALE_EXPONENT",
    "MIN_BITS",
    "MIN_SCALE_EXPONENT",
    "SCALE_CODES",
    "SCALE_STEPS_PER_OCTAVE",
    "QuantizedTensor",
    "dequantize",
    "group_count",
    "quantize_tensor",
    "scale_grid",
    "validate_settings",
]
