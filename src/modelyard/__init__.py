"""modelyard: run open-weight LLMs on real engines behind an OpenAI-compatible gateway."""

__version__ = "0.1.0"
