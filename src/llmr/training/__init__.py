"""Stages 3-5 of LLM-R: the reward model and the distilled retriever, trained from LLM feedback."""
