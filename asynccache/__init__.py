"""asynccache: an asyncio-native cache for LLM API calls.

Exact-match keys, single-flight for concurrent identical misses, an in-process L1 over Redis
or SQLite, and honest accounting of what each hit saved. See README.md and DESIGN.md.
"""

from ._cache import Cache
from ._exceptions import (
    BackendError,
    BackendTimeoutError,
    CacheClosedError,
    CacheError,
    CacheMissError,
    ConfigurationError,
    KeyBuildError,
)
from ._models import CachedResponse, CacheOptions, CacheRequest, CacheStatus, Entry, Usage
from ._policy import CachePolicy, Decision
from ._retry import RetryPolicy
from ._stats import CacheStats, CategoryStats, Price
from .integrations import wrap_anthropic, wrap_openai
from .integrations._common import cache_status

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "Cache",
    "CacheClosedError",
    "CacheError",
    "CacheMissError",
    "CacheOptions",
    "CachePolicy",
    "CacheRequest",
    "CacheStats",
    "CacheStatus",
    "CachedResponse",
    "CategoryStats",
    "ConfigurationError",
    "Decision",
    "Entry",
    "KeyBuildError",
    "Price",
    "RetryPolicy",
    "Usage",
    "cache_status",
    "wrap_anthropic",
    "wrap_openai",
]

__version__ = "0.1.0"
