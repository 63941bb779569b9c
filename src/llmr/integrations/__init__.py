"""The trained retriever inside frameworks people already use: LangChain and DSPy (each import-guarded)."""
