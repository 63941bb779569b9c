"""Stage 2 of LLM-R: the frozen LLM scores candidates (feedback), cached per (context, answer) pair."""
