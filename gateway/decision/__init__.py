"""Decision mode: a front proxy (nginx, Traefik, Caddy, HAProxy, Envoy) proxies, the gateway decides.

``front`` reads the original request the proxy describes (only from the
headers its configured ``front`` sends, only from allowed peers); ``answer``
turns an admission into the 200 the proxy copies identity headers from, with a
cache lifetime for the front proxy's cache. The decision itself is
``pipeline.admit``, the same step proxy mode runs, with the same admission
cache (gateway/auth/admission_cache.py).
"""
