"""Stage 1 of LLM-R: candidate examples for each query, from a retriever over the pool."""

from llmr.candidates.bm25 import BM25Retriever
from llmr.candidates.dense import DenseRetriever
from llmr.candidates.mine import Retriever, Scope, load_retriever, mine_candidates, mine_to_file

__all__ = ["BM25Retriever", "DenseRetriever", "Retriever", "Scope", "load_retriever", "mine_candidates", "mine_to_file"]
