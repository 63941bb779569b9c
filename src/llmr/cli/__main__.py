from llmr.cli import main

main()
