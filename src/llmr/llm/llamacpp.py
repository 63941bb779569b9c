"""llama.cpp backend (llama-cpp-python): GGUF models on CPU, quantized as shipped.

Scoring is built on llama.cpp's low-level decode so that it computes what it needs and no more:
- one sequence per decode call: llama.cpp's numerics change with how sequences are packed into
  a call (measured: up to 0.6 nats/token), and one at a time gives the same score for a pair
  whatever else is in the request;
- logits (the LM head, 262k words for Gemma 3) only at the positions that predict continuation
  tokens, not at every position (`logits_all`) and not at the context's positions;
- each pair is decoded as two calls, the context but its last token, then the rest; when the
  next pair has the same context (options of one question), the first call's KV cache is kept.
  The split is the same whether the cache is reused or not, so reuse changes no score.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmr.base.files import file_fingerprint
from llmr.llm.base import LLM, Score, cut_at_stop
from llmr.llm.models import DEFAULT_LLM, EMBEDDED
from llmr.llm.vllm_backend import build_token_prompts


def resolve_gguf(model: str) -> Path:
    """An embedded model's name ("gemma-3-270m", "smollm2-135m") or a path to a .gguf file."""
    if model in EMBEDDED:
        return EMBEDDED[model].gguf_path()
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return path.resolve()
    raise ValueError(
        f"the llama.cpp backend needs a .gguf file or an embedded model ({', '.join(EMBEDDED)}), not {model!r}"
    )


class LlamaCppLLM(LLM):
    def __init__(
        self,
        model: str = DEFAULT_LLM,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        reuse_context: bool = True,
        verbose: bool = False,
        **llama_options: Any,
    ) -> None:
        try:
            import llama_cpp
        except ImportError as exc:
            raise ImportError("the llama.cpp backend needs llama-cpp-python: pip install 'llmr[llamacpp]'") from exc
        self._lib = llama_cpp
        self.path = resolve_gguf(model)
        threads = n_threads or os.cpu_count() or 1
        self.llama = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            seed=seed,
            logits_all=False,
            verbose=verbose,
            **llama_options,
        )
        self.max_length = self.llama.n_ctx()
        self.n_batch = n_batch
        self.reuse_context = reuse_context
        self._ctx = self.llama.ctx
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self.llama.model)
        self._n_vocab = self.llama.n_vocab()
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        bos = self.llama.token_bos()
        # Gemma adds BOS, SmolLM2 does not: follow what the model's own tokenizer does (as the HF backend does).
        self._prefix = [bos] if bos >= 0 and self.llama.tokenize(b"a", add_bos=True)[:1] == [bos] else []
        self._cached: list[int] | None = None  # tokens whose KV sits at positions 0.. (None: unknown)
        # The whole file's content (a GGUF edited past its first MiB, or swapped in place, is another model).
        self.fingerprint = f"llamacpp:{self.path.name}:{file_fingerprint(self.path, remember=True)[7:23]}"

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "llama", None) is not None:
            self.llama.close()

    def __del__(self) -> None:
        try:  # noqa: SIM105 - no contextlib here: at interpreter exit, module globals may be gone
            self.close()
        except Exception:
            pass

    # --- low level ----------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        # special=True: text that spells a special token becomes that token, as with HF tokenizers.
        return [self.llama.tokenize(t.encode("utf-8"), add_bos=False, special=True) if t else [] for t in texts]

    def _forget(self, start: int) -> None:
        """Drop the KV cache from position `start` on."""
        if start == 0:
            self._lib.llama_memory_clear(self._mem, True)
        else:
            self._lib.llama_memory_seq_rm(self._mem, 0, start, -1)

    def _decode(self, tokens: Sequence[int], start: int, outputs_from: int | None) -> list[np.ndarray]:
        """Decode `tokens` at positions start.. in chunks of n_batch; return copies of the logits of
        tokens[outputs_from:] (none if outputs_from is None): only those positions run the LM head."""
        rows: list[np.ndarray] = []
        batch = self._batch
        for lo in range(0, len(tokens), self.n_batch):
            chunk = tokens[lo : lo + self.n_batch]
            batch.n_tokens = len(chunk)
            want = []
            for j, tok in enumerate(chunk):
                batch.token[j] = tok
                batch.pos[j] = start + lo + j
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = 0
                flag = outputs_from is not None and lo + j >= outputs_from
                batch.logits[j] = flag
                if flag:
                    want.append(j)
            rc = self._lib.llama_decode(self._ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc} (context of {self.max_length} tokens full?)")
            for j in want:
                ptr = self._lib.llama_get_logits_ith(self._ctx, j)
                arr = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self._n_vocab,))
                rows.append(arr.copy())
        return rows

    # --- LLM interface ------------------------------------------------------------------------
    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
        if not contexts:
            return []
        cont_ids = self._encode(continuations)
        seqs = build_token_prompts(self._encode(contexts), cont_ids, self._prefix, self.max_length)
        return [self._score_one(seq, len(cont)) for seq, cont in zip(seqs, cont_ids, strict=True)]

    def _score_one(self, seq: list[int], n_cont: int) -> Score:
        split = len(seq) - n_cont - 1  # head = seq[:split]; tail = last context token + continuation
        head, tail = seq[:split], seq[split:]
        if not (self.reuse_context and self._cached == head):
            self._forget(0)
            self._cached = None
            self._decode(head, 0, None)
            self._cached = head
        self._forget(split)
        logits = self._decode(tail, split, 0)[:n_cont]  # tail[j]'s logits predict tail[j + 1]
        total = 0.0
        for j, row in enumerate(logits):
            peak = row.max()  # float32 exp is vectorized (10x faster than float64); the sum is float64
            total += float(row[tail[j + 1]] - peak) - float(np.log(np.exp(row - peak).sum(dtype=np.float64)))
        return Score(total, n_cont)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: str | None = "\n") -> list[str]:
        room = max(1, self.max_length - max_new_tokens - len(self._prefix))
        return [self._generate_one(self._prefix + ids[-room:], max_new_tokens, stop) for ids in self._encode(prompts)]

    def _generate_one(self, ids: list[int], max_new_tokens: int, stop: str | None) -> str:
        self._cached = None
        self._forget(0)
        out: list[int] = []
        if max_new_tokens <= 0:
            return ""
        if not ids:
            raise ValueError("the prompt is empty and the model has no BOS: nothing to condition on")
        (row,) = self._decode(ids, 0, len(ids) - 1)
        text = ""
        while True:
            tok = int(row.argmax())
            if self._lib.llama_vocab_is_eog(self._vocab, tok):
                break
            out.append(tok)
            text = self.llama.detokenize(out, prev_tokens=ids).decode("utf-8", errors="ignore")
            if (stop and stop in text) or len(out) >= max_new_tokens or len(ids) + len(out) >= self.max_length:
                break
            (row,) = self._decode([tok], len(ids) + len(out) - 1, 0)
        return cut_at_stop(text, stop)
