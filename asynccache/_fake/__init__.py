"""Private building blocks of :mod:`asynccache.testing` (the FakeProvider test server).

Split out so each piece stays small: ``_http`` speaks just enough HTTP/1.1, ``_content`` makes
deterministic answers, token counts and embeddings, ``_openai`` and ``_anthropic`` shape them
into each provider's wire format. Nothing here is public API.
"""
