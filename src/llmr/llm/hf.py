"""Hugging Face transformers backend: the fastest CPU scorer measured here.

Speed comes from three things, each checked against one-at-a-time scoring in the tests:
- bf16 weights where the CPU supports it (AVX-512 BF16 / AMX), fp32 otherwise;
- batches of similar length (sorted), sized by a token budget, so little padding is computed;
- left padding + `logits_to_keep`: the LM head (262k-word vocabulary for Gemma 3) runs only on the
  last positions, which hold every continuation token of the batch.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Sequence

import torch

from llmr.base.encoders import default_dtype
from llmr.llm.base import LLM, Score, bos_prefix, cut_at_stop
from llmr.llm.models import DEFAULT_LLM, model_fingerprint, resolve_hf_model

log = logging.getLogger(__name__)


def _parse_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return default_dtype(device)
    try:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, bf16, fp16 or fp32, not {dtype!r}") from None


class HFCausalLM(LLM):
    def __init__(
        self,
        model: str = DEFAULT_LLM,
        *,
        device: str | None = None,
        dtype: str = "auto",
        max_length: int = 2048,
        batch_tokens: int = 8192,
        max_batch_size: int = 32,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # llmr shows its own progress; a bar per load is noise
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = _parse_dtype(dtype, self.device)
        path, self.model_id = resolve_hf_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
        self.max_length = max_length
        self.batch_tokens = batch_tokens
        self.max_batch_size = max_batch_size
        self._prefix = bos_prefix(self.tokenizer)
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # What decides the scores: the weights and config (content, for a local folder), the dtype, and in
        # low precision the batching (other pairs in a batch change a pair's score: up to 0.19 nats in bf16).
        batching = "" if self.dtype == torch.float32 else f":batch={batch_tokens}x{max_batch_size}"
        self.fingerprint = f"hf:{self.model_id}:{model_fingerprint(path)}:{str(self.dtype).removeprefix('torch.')}"
        self.fingerprint += batching
        # transformers 5 names the KV cache argument `cache`; 4.x `past_key_values`
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._prefix) + len(ids) for ids in self._encode(texts)] if texts else []

    def _batches(self, lengths: Sequence[int]) -> Iterator[list[int]]:
        """Indices grouped longest first, each group within the token budget."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batch: list[int] = []
        for i in order:
            # The first item of a batch is its longest: it sets the padded width.
            width = lengths[batch[0]] if batch else lengths[i]
            if (batch and (len(batch) + 1) * width > self.batch_tokens) or len(batch) == self.max_batch_size:
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _left_padded(self, seqs: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
        # Positions count real tokens only, so a padded row computes exactly what it would alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {
            "input_ids": ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "position_ids": positions.to(self.device),
        }

    @torch.inference_mode()
    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
        if not contexts:
            return []
        ctx_ids, cont_ids = self._encode(contexts), self._encode(continuations)
        seqs: list[list[int]] = []
        for i, (ctx, cont) in enumerate(zip(ctx_ids, cont_ids, strict=True)):
            if not cont:
                raise ValueError(f"continuation {i} is empty: nothing to score")
            room = self.max_length - len(self._prefix) - len(cont)
            if room < 1:
                raise ValueError(f"continuation {i} has {len(cont)} tokens, more than max_length {self.max_length}")
            seqs.append(self._prefix + ctx[-room:] + cont)  # cut the context's start, never the continuation
        out: list[Score | None] = [None] * len(seqs)
        for batch in self._batches([len(s) for s in seqs]):
            n_cont = [len(cont_ids[i]) for i in batch]
            keep = max(n_cont) + 1
            inputs = self._left_padded([seqs[i] for i in batch])
            self.tokens_processed += sum(len(seqs[i]) for i in batch)
            logits = self.model(**inputs, logits_to_keep=keep).logits  # (B, keep, V)
            targets = inputs["input_ids"][:, -(keep - 1) :]
            for row, i in enumerate(batch):  # row by row: long continuations x 262k words fit in memory
                logprobs = torch.log_softmax(logits[row, :-1].float(), dim=-1)  # position t predicts token t+1
                token_lp = logprobs.gather(-1, targets[row].unsqueeze(-1)).squeeze(-1)
                out[i] = Score(float(token_lp[-n_cont[row] :].sum()), n_cont[row])
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def score_options(self, contexts: Sequence[str], options: Sequence[Sequence[str]]) -> list[list[Score]]:
        """Runs each context once and scores all of its options on a copy of its KV cache: for k-shot
        prompts with short options (label words, answer choices) that is ~n_options times less work."""
        if len(contexts) != len(options):
            raise ValueError(f"{len(contexts)} contexts but {len(options)} option lists")
        opt_ids = [self._encode(opts) if opts else [] for opts in options]
        if any(not ids for opts in opt_ids for ids in opts):
            raise ValueError("an option is empty: nothing to score")
        seqs = []
        for ctx, opts in zip(self._encode(contexts), opt_ids, strict=True):
            room = self.max_length - len(self._prefix) - max((len(o) for o in opts), default=0)
            seqs.append(self._prefix + ctx[-max(room, 1) :])
        out: list[list[Score]] = [[] for _ in contexts]
        costs = [len(s) * max(len(o), 1) for s, o in zip(seqs, opt_ids, strict=True)]  # the cache is copied per option
        for batch in self._batches(costs):
            batch = [i for i in batch if opt_ids[i]]
            if not batch:
                continue
            inputs = self._left_padded([seqs[i] for i in batch])
            result = self.model(**inputs, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(result.logits[:, -1].float(), dim=-1)  # predicts each option's first token
            rows = torch.tensor([r for r, i in enumerate(batch) for _ in opt_ids[i]], device=self.device)
            cache = result.cache if getattr(result, "cache", None) is not None else result.past_key_values
            cache.batch_select_indices(rows)  # one copy of the context's cache per option
            flat = [o for i in batch for o in opt_ids[i]]
            width = max(len(o) for o in flat)
            ids = torch.full((len(flat), width), self._pad, dtype=torch.long)
            mask = torch.zeros((len(flat), width), dtype=torch.long)
            for r, o in enumerate(flat):  # options right-padded after the left-padded contexts
                ids[r, : len(o)] = torch.tensor(o)
                mask[r, : len(o)] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            ctx_mask = inputs["attention_mask"][rows]
            positions = ctx_mask.sum(-1, keepdim=True) + torch.arange(width, device=self.device)
            logits = self.model(
                input_ids=ids,
                attention_mask=torch.cat([ctx_mask, mask], dim=-1),
                position_ids=positions,
                **{self._cache_arg: cache},
            ).logits.float()
            token_lp = torch.empty(len(flat), width, device=self.device)
            token_lp[:, 0] = first[rows].gather(-1, ids[:, :1]).squeeze(-1)
            if width > 1:
                token_lp[:, 1:] = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            totals = (token_lp * mask).sum(-1)
            self.tokens_processed += sum(len(seqs[i]) for i in batch) + int(mask.sum())
            r = 0
            for i in batch:
                for o in opt_ids[i]:
                    out[i].append(Score(float(totals[r]), len(o)))
                    r += 1
        return out

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: str | None = "\n") -> list[str]:
        seqs = [
            self._prefix + ids[-(self.max_length - max_new_tokens - len(self._prefix)) :]
            for ids in self._encode(prompts)
        ]
        out: list[str] = [""] * len(seqs)
        extra = {"stop_strings": [stop], "tokenizer": self.tokenizer} if stop else {}
        for batch in self._batches([len(s) + max_new_tokens for s in seqs]):
            inputs = self._left_padded([seqs[i] for i in batch])
            inputs.pop("position_ids")  # generate() derives positions from the mask itself
            gen = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self._pad, **extra
            )
            width = inputs["input_ids"].shape[1]
            for row, i in enumerate(batch):
                out[i] = cut_at_stop(self.tokenizer.decode(gen[row, width:], skip_special_tokens=True), stop)
        return out
