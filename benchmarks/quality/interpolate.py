"""WiSE-FT probe: a trained retriever whose weights are averaged with the base encoder's.

    python benchmarks/quality/interpolate.py runs/quality/pipeline/retriever runs/wise-05 --alpha 0.5
    llmr study benchmarks/quality/study.yaml -o runs/quality --set eval.name=ablations \\
        --set "eval.methods=[bm25,dense,llmr-1,wise05:runs/wise-05]"

alpha is the trained model's share (1 = the trained weights, 0 = the base encoder). The output is a
copy of the trained folder (a sentence-transformers folder) with the averaged safetensors.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from llmr.base.encoders import DEFAULT_ENCODER, resolve_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trained", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--alpha", type=float, default=0.5, help="the trained weights' share")
    parser.add_argument("--base", default=DEFAULT_ENCODER, help="the encoder the retriever was trained from")
    args = parser.parse_args()
    base = load_file(str(Path(resolve_encoder(args.base)) / "model.safetensors"))
    trained = load_file(str(args.trained / "model.safetensors"))
    mixed = {k: (args.alpha * v.float() + (1 - args.alpha) * base[k].float()).to(v.dtype) for k, v in trained.items()}
    ignore = shutil.ignore_patterns("stage.json", "checkpoints", "model.safetensors")
    shutil.copytree(args.trained, args.out, ignore=ignore, dirs_exist_ok=True)
    save_file(mixed, str(args.out / "model.safetensors"), metadata={"format": "pt"})
    print(f"{args.out}: {args.alpha:g} x {args.trained} + {1 - args.alpha:g} x {args.base}")


if __name__ == "__main__":
    main()
