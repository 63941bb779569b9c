from llmr.cli import app

app()
