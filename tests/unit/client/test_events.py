"""The event recorder against a real API server: Events written in the background,
repeats aggregated into count/lastTimestamp, floods cut by the spam filter."""
from __future__ import annotations

import asyncio

from kcore.client import EVENTS, NODES, PODS, Client, EventRecorder


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_events_are_written_and_repeats_aggregated(apiserver):
    async def main():
        async with Client(apiserver.url) as c:
            pod = await c.create(PODS, {"metadata": {"name": "ev-pod"}, "spec": {
                "containers": [{"name": "c", "image": "i"}]}}, "default")
            pod.setdefault("kind", "Pod")
            pod.setdefault("apiVersion", "v1")
            rec = EventRecorder(c, "test-controller", "host-1")
            rec.event(pod, "Normal", "Started", "started it")
            await rec.flush()
            await asyncio.sleep(1.1)             # lastTimestamp has seconds precision
            for _ in range(3):
                rec.event(pod, "Normal", "Started", "started it")
            rec.event(pod, "Warning", "Failed", "it broke")
            await rec.flush()
            evs = (await c.list(EVENTS, "default", field_selector=(
                "involvedObject.name=ev-pod")))["items"]
            by_reason = {e["reason"]: e for e in evs}
            assert set(by_reason) == {"Started", "Failed"}
            s = by_reason["Started"]
            assert s["count"] == 4 and s["type"] == "Normal" and s["message"] == "started it"
            assert s["lastTimestamp"] > s["firstTimestamp"]
            assert s["source"] == {"component": "test-controller", "host": "host-1"}
            assert s["involvedObject"]["uid"] == pod["metadata"]["uid"]
            assert s["involvedObject"]["kind"] == "Pod"
            assert s["metadata"]["name"].startswith("ev-pod.")
            assert by_reason["Failed"]["count"] == 1
            # cluster-scoped objects' events go to "default"; floods are cut at 25
            node = await c.create(NODES, {"metadata": {"name": "ev-node"}})
            node.setdefault("kind", "Node")
            for i in range(40):
                rec.event(node, "Normal", "Flood", f"message {i}")
            await rec.flush()
            evs = (await c.list(EVENTS, "default", field_selector=(
                "involvedObject.name=ev-node")))["items"]
            assert len(evs) == 25 and rec.dropped >= 15
            await rec.stop()
    run(main())
