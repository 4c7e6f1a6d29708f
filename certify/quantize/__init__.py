"""Quantizers: group-wise round-to-nearest (:mod:`.rtn`) and Hessian-aware GPTQ (:mod:`.gptq`,
run over a whole model by :mod:`.layerwise`).

Both produce :class:`QuantizedTensor` codes of one form (group-wise integer codes, log-grid
scale codes, integer zero points; docs/FORMAT.md, "Quantized tensor payload"), so the
entropy coder, the container and the decoder do not depend on the quantizer.
"""

from __future__ import annotations

from certify.quantize.gptq import (
    GPTQ_METHOD,
    METHODS,
    RTN_METHOD,
    check_quantization_settings,
    gptq_quantize_matrix,
    layer_output_error,
    method_library_versions,
)
from certify.quantize.layerwise import GPTQResult, gptq_quantize_model, gptq_settings
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
    "GPTQ_METHOD",
    "MAX_BITS",
    "MAX_GROUP_SIZE",
    "MAX_SCALE_EXPONENT",
    "METHODS",
    "MIN_BITS",
    "MIN_SCALE_EXPONENT",
    "RTN_METHOD",
    "SCALE_CODES",
    "SCALE_STEPS_PER_OCTAVE",
    "GPTQResult",
    "QuantizedTensor",
    "check_quantization_settings",
    "dequantize",
    "gptq_quantize_matrix",
    "gptq_quantize_model",
    "gptq_settings",
    "group_count",
    "layer_output_error",
    "method_library_versions",
    "quantize_tensor",
    "scale_grid",
    "validate_settings",
]
