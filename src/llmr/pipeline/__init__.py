"""LLM-R end to end: one YAML config, stages keyed by what produced them, iterations."""

from llmr.pipeline.config import PipelineConfig
from llmr.pipeline.runner import Pipeline, StageResult

__all__ = ["Pipeline", "PipelineConfig", "StageResult"]
