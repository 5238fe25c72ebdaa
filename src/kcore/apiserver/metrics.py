"""Prometheus metrics of the API server (apiserver_request_total and friends)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "apiserver_request_total", "Counter of apiserver requests broken out by verb, "
            "group, version, resource, subresource and HTTP response code.",
            ["verb", "group", "version", "resource", "subresource", "code"],
            registry=self.registry)
        self.latency = Histogram(
            "apiserver_request_duration_seconds", "Response latency distribution in seconds "
            "for each verb, group, version, resource and subresource.",
            ["verb", "group", "version", "resource", "subresource"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3,
                     4, 5, 6, 8, 10, 15, 20, 30, 45, 60),
            registry=self.registry)
        self.watchers = Gauge("apiserver_registered_watchers", "Number of currently "
                              "registered watchers for a given resource",
                              ["group", "resource"], registry=self.registry)
        self.objects = Gauge("apiserver_storage_objects", "Number of stored objects at the "
                             "time of last check split by kind.", ["resource"],
                             registry=self.registry)
        self._children: dict = {}

    def observe(self, verb: str, group: str, version: str, resource: str, sub: str,
                code: int, seconds: float) -> None:
        key = (verb, group, version, resource, sub, code)
        ch = self._children.get(key)
        if ch is None:
            ch = self._children[key] = (
                self.requests.labels(verb, group, version, resource, sub, str(code)),
                self.latency.labels(verb, group, version, resource, sub))
        ch[0].inc()
        ch[1].observe(seconds)

    def render(self, server) -> bytes:
        for reg in server.registries.values():
            self.objects.labels(reg.kind.plural if not reg.kind.group
                                else f"{reg.kind.plural}.{reg.kind.group}").set(
                len(reg.cache.objects))
            self.watchers.labels(reg.kind.group, reg.kind.plural).set(len(reg.cache.watchers))
        return generate_latest(self.registry)
