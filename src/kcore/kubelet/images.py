"""Image references and the simulated pull.

No image is downloaded: an image "pulls" when `--image-registries` is empty or
one of its entries matches the normalized reference (a registry host, a
repository prefix, or a glob). A miss fails as containerd reports a missing
image, so the kubelet shows ErrImagePull, then ImagePullBackOff."""
from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass


def normalize(image: str) -> str:
    """'python' → 'docker.io/library/python:latest', as the CRI names it."""
    ref = image.strip()
    digest = ""
    if "@" in ref:
        ref, _, digest = ref.partition("@")
    first, slash, rest = ref.partition("/")
    if not slash:
        host, path = "docker.io", "library/" + first
    elif "." in first or ":" in first or first == "localhost":
        host, path = first, rest
    else:
        host, path = "docker.io", ref
    tag = ""
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
    if digest:
        return f"{host}/{path}@{digest}"
    return f"{host}/{path}:{tag or 'latest'}"


def image_id(image: str) -> str:
    """A stable fake digest for the recorded image."""
    ref = normalize(image)
    repo = ref.split("@")[0].rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


def _repo(ref: str) -> str:
    return ref.split("@")[0].rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] or "@" in ref \
        else ref


def allowed(image: str, registries: list[str]) -> bool:
    """Entries: a registry host ('docker.io', 'localhost:5000'), a repository
    ('python', 'docker.io/me/app'), an exact image ('nginx:1.25') or a glob. A host
    needs a dot, 'localhost', or a trailing '/' ('myreg:5000/')."""
    if not registries:
        return True
    ref = normalize(image)
    for entry in registries:
        e = entry.strip()
        is_host = e.endswith("/") and "/" not in e[:-1]
        e = e.rstrip("/")
        host = e.split(":", 1)[0]
        is_host = is_host or ("/" not in e and ("." in host or host == "localhost"))
        if not e:
            continue
        if any(ch in e for ch in "*?["):
            if fnmatch.fnmatchcase(ref, e) or fnmatch.fnmatchcase(image, e):
                return True
        elif is_host:
            if ref.startswith(e + "/"):
                return True
        elif "@" in e or ":" in e.rsplit("/", 1)[-1]:
            if ref == normalize(e):
                return True
        elif _repo(ref) == _repo(normalize(e)):
            return True
    return False


@dataclass(frozen=True)
class PullError(Exception):
    image: str

    @property
    def message(self) -> str:
        ref = normalize(self.image)
        return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
                f'failed to resolve reference "{ref}": {ref}: not found')


def pull(image: str, registries: list[str]) -> str:
    """The simulated pull: the imageID, or PullError."""
    if not allowed(image, registries):
        raise PullError(image)
    return image_id(image)
