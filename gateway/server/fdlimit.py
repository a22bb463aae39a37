"""The open-files limit: raised from its soft to its hard value at start, and logged.

Every client connection costs a descriptor, a proxied one two. Distributions
start services with a soft limit of 1024, which a few hundred slow clients
exhaust; the hard limit (often 524288 or more) is what the operator allowed.
"""
from __future__ import annotations

import logging
import resource

__all__ = ["raise_nofile"]

log = logging.getLogger("gateway")


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files limit: could not raise the soft limit %d to %d (%s)", soft, target, exc)
        else:
            log.info("open files limit (RLIMIT_NOFILE): soft limit raised from %d to %d", soft, target)
            return target
    log.info("open files limit (RLIMIT_NOFILE): %d", soft)
    return soft
