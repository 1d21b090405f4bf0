"""handoff: the working memory of AI agents, kept in MongoDB."""

__version__ = "0.1.0"
