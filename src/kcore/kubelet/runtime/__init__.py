"""Container runtimes behind one interface (base.Runtime): process (real local
processes) and fake (instant "running", no processes); netns networking."""
from kcore.kubelet.runtime.base import Container, Exit, PodRef, Runtime, Sandbox, StartError

__all__ = ["Container", "Exit", "PodRef", "Runtime", "Sandbox", "StartError"]
