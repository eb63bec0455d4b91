"""Wrappers that put the cache in front of the official async SDK clients."""

from .anthropic import wrap_anthropic
from .openai import wrap_openai

__all__ = ["wrap_anthropic", "wrap_openai"]
