"""Stage 7 of LLM-R: in-context evaluation of example selectors across tasks.

selectors (which examples) -> prompt (order, token budget) -> inference (per task mode) -> metrics -> report
"""

from llmr.evaluation.harness import EvalSettings, OutcomeCache, evaluate, evaluate_methods
from llmr.evaluation.report import write_report
from llmr.evaluation.selectors import Example, SelectionMethod, make_selector, select

__all__ = [
    "EvalSettings",
    "Example",
    "OutcomeCache",
    "SelectionMethod",
    "evaluate",
    "evaluate_methods",
    "make_selector",
    "select",
    "write_report",
]
