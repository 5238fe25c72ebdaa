"""Container probes: exec, httpGet, tcpSocket (and grpc as a TCP connect).

`ProbeCounter` is the pure part: kube's threshold rules (a result flips only
after successThreshold successes / failureThreshold failures in a row);
`run_probe` performs one probe and says Success/Failure with kube's message."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

SUCCESS, FAILURE = "Success", "Failure"


@dataclass(frozen=True)
class ProbeSpec:
    kind: str                    # liveness | readiness | startup
    handler: dict                # the probe dict (exec / httpGet / tcpSocket / grpc)
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: int | None = None

    @classmethod
    def from_api(cls, kind: str, probe: dict) -> ProbeSpec:
        st = int(probe.get("successThreshold") or 1)
        if kind in ("liveness", "startup"):
            st = 1
        return cls(kind, probe, float(probe.get("initialDelaySeconds") or 0),
                   float(probe.get("periodSeconds") or 10),
                   float(probe.get("timeoutSeconds") or 1), st,
                   int(probe.get("failureThreshold") or 3),
                   probe.get("terminationGracePeriodSeconds"))


@dataclass
class ProbeCounter:
    """Consecutive results → the probe's verdict. Readiness starts at Failure,
    liveness and startup at Success (unknown counts as alive)."""
    success_threshold: int
    failure_threshold: int
    result: str
    successes: int = 0
    failures: int = 0

    @classmethod
    def for_spec(cls, spec: ProbeSpec) -> ProbeCounter:
        return cls(spec.success_threshold, spec.failure_threshold,
                   FAILURE if spec.kind == "readiness" else SUCCESS)

    def observe(self, ok: bool) -> bool:
        """Record one result; True when the verdict changed."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.result != SUCCESS and self.successes >= self.success_threshold:
                self.result = SUCCESS
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.result != FAILURE and self.failures >= self.failure_threshold:
                self.result = FAILURE
                return True
        return False


def _port(value, ports: list[dict]) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    for p in ports:
        if p.get("name") == value:
            return int(p["containerPort"])
    raise ValueError(f"port {value!r} not found in container ports")


async def run_probe(handler: dict, *, pod_ip: str, container_ports: list[dict],
                    timeout: float, exec_fn=None) -> tuple[bool, str]:
    """One probe. Returns (ok, message); the message is kube's wording of a failure.
    `exec_fn(cmd, timeout) -> (exit_code, output)` runs an exec probe in the container."""
    try:
        if "exec" in handler:
            cmd = list((handler["exec"] or {}).get("command") or [])
            if exec_fn is None or not cmd:
                return False, "exec probe without command"
            code, out = await exec_fn(cmd, timeout)
            if code is None:
                return False, f"command {cmd!r} timed out"
            if code != 0:
                return False, out or f"command {cmd!r} exited with {code}"
            return True, ""
        if "httpGet" in handler:
            h = handler["httpGet"] or {}
            host = h.get("host") or pod_ip
            port = _port(h.get("port"), container_ports)
            scheme = (h.get("scheme") or "HTTP").lower()
            path = h.get("path") or "/"
            if not path.startswith("/"):
                path = "/" + path
            headers = {x["name"]: x.get("value", "") for x in h.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.32")
            url = f"{scheme}://{host}:{port}{path}"
            try:
                async with aiohttp.ClientSession() as s, s.get(
                        url, headers=headers, ssl=False, allow_redirects=True,
                        timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    await r.read()
                    if 200 <= r.status < 400:
                        return True, ""
                    return False, f"HTTP probe failed with statuscode: {r.status}"
            except TimeoutError:
                return False, (f'Get "{url}": context deadline exceeded (Client.Timeout '
                               f'exceeded while awaiting headers)')
            except (aiohttp.ClientError, OSError) as e:
                return False, f'Get "{url}": {_dial_error(host, port, e)}'
        if "tcpSocket" in handler or "grpc" in handler:
            h = handler.get("tcpSocket") or handler.get("grpc") or {}
            host = h.get("host") or pod_ip
            port = _port(h.get("port"), container_ports)
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                w.close()
                return True, ""
            except TimeoutError:
                return False, f"dial tcp {host}:{port}: i/o timeout"
            except OSError as e:
                return False, f"dial tcp {host}:{port}: {_dial_error(host, port, e)}"
        return False, "probe has no handler"
    except ValueError as e:
        return False, str(e)


def _dial_error(host, port, e: BaseException) -> str:
    text = str(e)
    if "refused" in text.lower():
        return f"dial tcp {host}:{port}: connect: connection refused"
    return text or type(e).__name__
