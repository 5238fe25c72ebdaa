"""Kubernetes resource kinds served by kcore: schemas, defaulting, validation.

One module per API group (`core`, `apps`, `coordination`, `autoscaling`); each
registers its kinds in `kinds.REGISTRY`. Objects stay plain dicts with
Kubernetes field names; `errors` holds the `Status` errors the API returns.
"""
from kcore.api.kinds import REGISTRY, Kind, all_kinds, load  # noqa: F401
