"""bmo: a headless agent hub behind the OpenAI and Anthropic wire formats."""

__version__ = "0.1.0"
