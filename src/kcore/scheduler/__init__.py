"""kcore's scheduler core: where each pod goes, given nodes and pods as plain dicts.

Public names: ``Scheduler`` (the fast, cached core a driver feeds with
informer events), ``ReferenceScheduler`` (dicts and loops, the definition the
fast one is tested against), ``Decision``, ``load_config``/``SchedulerConfig``
and ``binding_for``. Importing this package does not compile anything; the
Numba kernels load on first use (``warmup()`` loads them ahead of time).
"""
from __future__ import annotations

from .config import ConfigError, Profile, SchedulerConfig, load_config
from .core import Scheduler, warmup
from .decision import Decision
from .framework import MAX_NODE_SCORE, binding_for
from .reference import ReferenceScheduler

__all__ = [
           "MAX_NODE_SCORE",
           "ConfigError",
           "Decision",
           "Profile",
           "ReferenceScheduler",
           "Scheduler",
           "SchedulerConfig",
           "binding_for",
           "load_config",
           "warmup",
]
