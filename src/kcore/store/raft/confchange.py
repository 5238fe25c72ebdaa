"""Membership changes, one member at a time.

A change is applied when its entry is applied (etcd-io/raft's rule). It may
move at most one voter in or out, so any two consecutive configurations
have overlapping majorities; the leader keeps at most one change in flight
(see `Raft._step_leader`, `pending_conf_index`). Demoting a voter is not
supported.
"""
from __future__ import annotations

from .messages import ConfChange, ConfChangeType, ConfState


class InvalidConfChange(Exception):
    """The change cannot be applied to the current configuration."""


def apply_change(voters: frozenset[int], learners: frozenset[int],
                 cc: ConfChange) -> tuple[frozenset[int], frozenset[int]]:
    """The configuration after `cc`; raises InvalidConfChange."""
    nid = cc.node_id
    if nid == 0:
        return voters, learners  # etcd's "no-op" change
    if cc.type == ConfChangeType.ADD_NODE:
        return voters | {nid}, learners - {nid}
    if cc.type == ConfChangeType.ADD_LEARNER_NODE:
        if nid in voters:
            raise InvalidConfChange(f"{nid} is a voter; demotion is not supported")
        return voters, learners | {nid}
    if cc.type == ConfChangeType.REMOVE_NODE:
        new_voters = voters - {nid}
        if not new_voters and voters:
            raise InvalidConfChange("removing the last voter")
        return new_voters, learners - {nid}
    raise InvalidConfChange(f"unknown conf change type {cc.type!r}")


def from_conf_state(cs: ConfState) -> tuple[frozenset[int], frozenset[int]]:
    voters, learners = frozenset(cs.voters), frozenset(cs.learners)
    if voters & learners:
        raise InvalidConfChange(f"{sorted(voters & learners)} both voter and learner")
    return voters, learners
