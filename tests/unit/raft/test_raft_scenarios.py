"""The classic Raft scenarios, each on a small synchronous network (raft_net.Net)."""
from __future__ import annotations

import pytest
from raft_net import Net, storage_with_log

from kcore.store.raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    Role,
)

MT = MessageType


def elected(pre_vote=False, check_quorum=False, ids=(1, 2, 3), **cfg) -> Net:
    net = Net(ids, pre_vote=pre_vote, check_quorum=check_quorum, **cfg)
    net.campaign(ids[0])
    assert net.leader() == ids[0]
    return net


# -- elections ------------------------------------------------------------------

@pytest.mark.parametrize("pre_vote", [False, True])
def test_election_makes_one_leader_everyone_follows(pre_vote):
    net = Net([1, 2, 3], pre_vote=pre_vote)
    net.campaign(1)
    assert net.raft(1).role == Role.LEADER
    for nid in (2, 3):
        assert net.raft(nid).role == Role.FOLLOWER
        assert net.raft(nid).lead == 1
    # Bootstrap leaves everyone at term 1; the election is term 2 either way
    # (a pre-vote asks for term+1 without taking it).
    assert {net.raft(i).term for i in (1, 2, 3)} == {2}
    # the leader's empty entry of its term commits and applies everywhere
    for nid in (1, 2, 3):
        assert net.raft(nid).log.committed == 4
        assert net.applied[nid][-1].term == 2


@pytest.mark.parametrize("pre_vote", [False, True])
def test_ticks_alone_elect_exactly_one_leader(pre_vote):
    net = Net([1, 2, 3, 4, 5], pre_vote=pre_vote, check_quorum=True)
    for _ in range(100):
        net.tick_all()
        if net.leader():
            break
    lead = net.leader()
    assert lead
    term = net.raft(lead).term
    assert all(net.raft(i).lead == lead and net.raft(i).term == term for i in net.nodes)


def test_split_vote_then_a_later_term_resolves_it():
    net = Net([1, 2, 3, 4])
    # 1 reaches only 3, 2 reaches only 4: two candidates, two votes each.
    net.cut |= {(1, 4), (4, 1), (2, 3), (3, 2)}
    net.nodes[1].campaign()
    net.nodes[2].campaign()
    net.flush()
    assert net.leader() == 0
    assert net.raft(1).role == net.raft(2).role == Role.CANDIDATE
    assert net.raft(1).term == net.raft(2).term == 2
    net.heal()
    for _ in range(60):
        net.tick_all()
        if net.leader():
            break
    assert net.leader() and net.raft(net.leader()).term > 2


def test_candidate_with_stale_log_loses():
    net = Net([1, 2, 3])
    net.campaign(1)
    net.isolate(3)
    net.propose(1, b"x")  # 3 misses it
    net.heal()
    net.campaign(3)
    assert net.raft(3).role != Role.LEADER  # 1 and 2 refuse: 3's log is behind
    net.tick_all(40)
    assert net.leader() in (1, 2)


def test_pre_vote_keeps_a_partitioned_member_from_inflating_its_term():
    net = elected(pre_vote=True, check_quorum=True)
    term = net.raft(1).term
    net.isolate(3)
    net.tick(3, 200)
    assert net.raft(3).term == term  # only ever a pre-candidate
    assert net.raft(3).role == Role.PRE_CANDIDATE
    net.heal()
    net.tick(1)  # heartbeat
    assert net.leader() == 1 and net.raft(1).term == term
    assert net.raft(3).role == Role.FOLLOWER and net.raft(3).lead == 1


def test_without_pre_vote_a_rejoining_member_disrupts_the_leader():
    net = elected(pre_vote=False, check_quorum=False)
    term = net.raft(1).term
    net.isolate(3)
    net.tick(3, 200)
    assert net.raft(3).term > term + 5
    net.heal()
    net.tick(1)  # leader's heartbeat meets a higher term and steps down
    assert net.raft(1).term > term
    net.tick_all(60)
    assert net.leader()


def test_check_quorum_leader_steps_down_without_quorum_contact():
    net = elected(check_quorum=True)
    net.isolate(1)
    net.tick(1, 21)  # the first check sees the election's responses; the second none
    assert net.raft(1).role == Role.FOLLOWER
    assert net.raft(1).lead == NONE


def test_check_quorum_leader_with_quorum_stays():
    net = elected(check_quorum=True)
    net.isolate(3)
    net.tick(1, 35)
    assert net.raft(1).role == Role.LEADER


@pytest.mark.parametrize("check_quorum", [False, True])
def test_leader_lease_followers_ignore_votes_while_leader_is_live(check_quorum):
    net = elected(check_quorum=check_quorum)
    term = net.raft(2).term
    last = net.raft(2).log.last_index()
    net.nodes[2].step(Message(MT.VOTE, to=2, from_=3, term=term + 5, index=last + 10,
                              log_term=term + 5))
    if check_quorum:
        assert net.raft(2).term == term and net.raft(2).lead == 1
    else:
        assert net.raft(2).term == term + 5 and net.raft(2).vote == 3


# -- replication ------------------------------------------------------------------

FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIG7_FOLLOWERS))
@pytest.mark.parametrize("max_size", [1, 1 << 20])
def test_log_divergence_is_repaired_from_the_leader(case, max_size):
    """Figure 7 of the Raft paper: whatever the follower holds, it ends up
    with exactly the leader's log."""
    storages = {
        1: storage_with_log([1, 2, 3], FIG7_LEADER, term=8),
        2: storage_with_log([1, 2, 3], FIG7_FOLLOWERS[case]),
        3: MemoryStorage(ConfState((1, 2, 3))),  # empty: votes for 1
    }
    net = Net([1, 2, 3], bootstrap=False, storages=storages, max_size_per_msg=max_size)
    net.campaign(1)
    assert net.leader() == 1
    net.propose(1, b"new")
    assert net.log_terms(2) == net.log_terms(1)
    assert net.log_terms(1)[-1] == (12, 9)
    assert net.raft(2).log.committed == net.raft(1).log.committed == 12


def test_conflict_hint_skips_a_long_divergent_tail_in_few_round_trips():
    leader = [1] * 3 + [5] * 50
    follower = [1] * 3 + [2] * 40 + [3] * 40
    storages = {
        1: storage_with_log([1, 2, 3], leader, term=6),
        2: storage_with_log([1, 2, 3], follower),
        3: MemoryStorage(ConfState((1, 2, 3))),
    }
    net = Net([1, 2, 3], bootstrap=False, storages=storages)
    net.campaign(1)
    rejects = [m for m in net.delivered if m.type == MT.APP_RESP and m.reject and m.from_ == 2]
    assert len(rejects) <= 2, rejects
    assert net.log_terms(2) == net.log_terms(1)


def test_leader_commits_only_entries_of_its_own_term_by_counting():
    """Figure 8: a majority holding an older-term entry does not commit it;
    it commits once an entry of the leader's term is on a majority."""
    storages = {
        1: storage_with_log([1, 2, 3], [1, 2], term=2),
        2: storage_with_log([1, 2, 3], [1]),
        3: storage_with_log([1, 2, 3], [1]),
    }
    net = Net([1, 2, 3], bootstrap=False, storages=storages)
    net.drop = lambda m: m.type == MT.APP  # the election goes through, appends do not
    net.campaign(1)
    r = net.raft(1)
    assert r.role == Role.LEADER and r.term == 3
    assert r.log.last_index() == 3 and r.log.term(3) == 3  # its empty entry
    r.step(Message(MT.APP_RESP, to=1, from_=2, term=3, index=2))
    assert r.log.committed == 0  # index 2 (term 2) is on 1 and 2, but not committed
    r.step(Message(MT.APP_RESP, to=1, from_=3, term=3, index=3))
    assert r.log.committed == 3


def test_batching_respects_max_size_per_msg():
    net = elected(max_size_per_msg=60, max_inflight_msgs=256)
    net.cut |= {(1, 3)}
    for i in range(20):
        net.propose(1, b"%02d" % i)  # 2 bytes + 16 overhead per entry
    net.heal()
    net.delivered.clear()
    net.tick(1)
    apps = [m for m in net.delivered if m.type == MT.APP and m.to == 3 and m.entries]
    assert apps and max(len(m.entries) for m in apps) == 3
    assert net.values(3)[-20:] == [b"%02d" % i for i in range(20)]


def test_pipelining_stops_at_the_inflight_window():
    net = elected(max_size_per_msg=1, max_inflight_msgs=3)
    net.drop = lambda m: m.type == MT.APP_RESP  # no acks come back
    net.delivered.clear()
    for i in range(10):
        net.propose(1, b"v%d" % i)
    apps = [m for m in net.delivered if m.type == MT.APP and m.to == 2 and m.entries]
    assert len(apps) == 3  # three in flight, one entry each, then paused
    net.heal()
    net.tick(1)
    assert net.values(2)[-10:] == [b"v%d" % i for i in range(10)]


# -- reads ----------------------------------------------------------------------------

def test_read_index_on_the_leader_and_through_a_follower():
    net = elected()
    net.propose(1, b"x")
    commit = net.raft(1).log.committed
    net.nodes[1].read_index(b"ctx-1")
    net.flush()
    assert [(rs.index, rs.request_ctx) for rs in net.read_states[1]] == [(commit, b"ctx-1")]
    net.nodes[3].read_index(b"ctx-3")
    net.flush()
    assert [(rs.index, rs.request_ctx) for rs in net.read_states[3]] == [(commit, b"ctx-3")]


def test_read_index_needs_a_quorum_of_heartbeat_acks():
    net = elected()
    net.isolate(1)
    net.nodes[1].read_index(b"stale?")
    net.tick(1, 3)
    assert net.read_states[1] == []  # a cut-off leader cannot confirm it still leads


def test_read_index_waits_for_the_new_leader_to_commit_in_its_term():
    net = Net([1, 2, 3])
    net.drop = lambda m: m.type == MT.APP
    net.campaign(1)
    assert net.leader() == 1 and net.raft(1).log.committed < net.raft(1).log.last_index()
    net.nodes[1].read_index(b"r")
    net.flush()
    assert net.read_states[1] == []
    net.heal()
    net.tick(1)  # heartbeat responses pull the appends, the empty entry commits
    assert [rs.request_ctx for rs in net.read_states[1]] == [b"r"]
    assert net.read_states[1][0].index == net.raft(1).log.committed


# -- leader transfer ----------------------------------------------------------------

def test_leader_transfer_to_an_up_to_date_follower():
    net = elected()
    term = net.raft(1).term
    net.nodes[1].transfer_leader(2)
    net.flush()
    assert net.leader() == 2 and net.raft(2).term == term + 1


def test_leader_transfer_catches_up_a_lagging_follower_first():
    net = elected(check_quorum=True, pre_vote=True)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"v%d" % i)
    net.heal()
    net.nodes[1].transfer_leader(3)
    net.flush()
    assert net.leader() == 3
    assert net.log_terms(3)[:-1] == net.log_terms(1)[:-1]


def test_proposals_are_dropped_during_a_transfer_which_times_out():
    net = elected()
    net.isolate(3)
    net.nodes[1].transfer_leader(3)
    net.flush()
    assert net.raft(1).lead_transferee == 3
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose(b"x")
    net.tick(1, 10)
    assert net.raft(1).lead_transferee == NONE and net.leader() == 1
    net.propose(1, b"y")
    assert net.values(2)[-1] == b"y"


def test_transfer_through_a_follower_is_forwarded():
    net = elected()
    net.nodes[2].transfer_leader(2)
    net.flush()
    assert net.leader() == 2


# -- snapshots ----------------------------------------------------------------------

def compact(net: Net, nid: int, data: bytes = b"state") -> int:
    applied = net.raft(nid).log.applied
    net.storage[nid].create_snapshot(applied, net.conf[nid], data)
    net.storage[nid].compact(applied)
    return applied


def test_lagging_follower_gets_a_snapshot_then_the_log():
    net = elected()
    net.isolate(3)
    for i in range(10):
        net.propose(1, b"v%d" % i)
    snap = compact(net, 1)
    net.propose(1, b"after")
    net.heal()
    net.tick(1)
    assert net.snapshots_installed[3] == snap
    assert net.storage[3].snapshot().data == b"state"
    assert net.raft(3).log.committed == net.raft(1).log.committed
    assert net.values(3)[-1] == b"after"
    assert net.raft(1).tracker.progress[3].state.name == "REPLICATE"


def test_failed_snapshot_is_retried_after_report():
    net = elected()
    net.isolate(3)
    net.propose(1, b"v")
    compact(net, 1)
    net.heal()
    net.drop = lambda m: m.type == MT.SNAP
    net.tick(1)
    assert 3 not in net.snapshots_installed
    pr = net.raft(1).tracker.progress[3]
    assert pr.state.name == "PROBE"  # report_snapshot(ok=False) moved it back
    net.drop = None
    net.tick(1, 2)
    assert 3 in net.snapshots_installed


def test_stale_snapshot_is_ignored_by_a_follower_that_is_ahead():
    net = elected()
    r = net.raft(2)
    before = r.log.committed
    old = net.storage[1].create_snapshot(2, net.conf[1], b"old")
    net.nodes[2].step(Message(MT.SNAP, to=2, from_=1, term=r.term, snapshot=old))
    assert r.log.committed == before
    out = net.process(2)
    assert out[-1].type == MT.APP_RESP and out[-1].index == before


def test_restart_from_snapshot_and_log_replays_committed_entries():
    net = elected()
    for i in range(4):
        net.propose(1, b"v%d" % i)
    snap = compact(net, 2)
    net.propose(1, b"tail")
    term, commit = net.raft(2).term, net.raft(2).log.committed
    net.restart(2)
    r = net.raft(2)
    assert (r.term, r.log.committed, r.log.applied) == (term, commit, snap)
    net.process(2)
    assert [e.data for e in net.applied[2]] == [b"tail"]


# -- membership ------------------------------------------------------------------------

def add(net: Net, lead: int, nid: int, typ=ConfChangeType.ADD_NODE) -> None:
    if nid not in net.nodes:
        net.add(nid)
    net.nodes[lead].propose_conf_change(ConfChange(typ, nid))
    net.flush()


def test_add_member_catches_up_and_counts_for_quorum():
    net = elected()
    add(net, 1, 4)
    assert net.conf[1] == ConfState((1, 2, 3, 4))
    assert net.conf[4] == ConfState((1, 2, 3, 4))  # replayed from the log
    assert net.log_terms(4) == net.log_terms(1)
    net.isolate(2)
    net.isolate(3)
    net.cut -= {(1, 4), (4, 1)}
    net.propose(1, b"x")  # leader + 4 are 2 of 4: not a quorum
    assert b"x" not in net.values(1)
    net.heal()
    net.tick(1)
    assert b"x" in net.values(1)


def test_new_member_joins_through_a_snapshot():
    net = elected()
    net.propose(1, b"v")
    compact(net, 1)
    add(net, 1, 4)
    net.tick(1, 2)
    assert 4 in net.snapshots_installed
    assert net.conf[4] == ConfState((1, 2, 3, 4))


def test_remove_member_shrinks_the_quorum():
    net = elected()
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))
    net.flush()
    assert net.conf[1] == ConfState((1, 2))
    assert 3 not in net.raft(1).tracker.progress
    net.isolate(3)
    net.propose(1, b"x")
    assert b"x" in net.values(1)


def test_removed_leader_hands_over_and_steps_down():
    net = elected()
    term = net.raft(1).term
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))
    net.flush()
    assert net.raft(1).role == Role.FOLLOWER
    assert not net.raft(1).promotable()
    # Its MsgTimeoutNow may reach a voter that has not applied the removal yet
    # (which then will not campaign); an election timeout settles it anyway.
    for _ in range(40):
        if net.leader():
            break
        net.tick_all()
    assert net.leader() in (2, 3) and net.raft(net.leader()).term > term
    net.propose(net.leader(), b"after")
    assert b"after" in net.values(2)


def test_one_conf_change_at_a_time():
    net = elected()
    net.drop = lambda m: m.type == MT.APP  # keep the first change uncommitted
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 4))
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 5))


def test_new_leader_cannot_change_membership_before_applying_its_term():
    net = Net([1, 2, 3])
    net.drop = lambda m: m.type == MT.APP
    net.campaign(1)
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))


def test_invalid_changes_are_refused():
    net = elected()
    with pytest.raises(ProposalDropped):  # demotion is not supported
        net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, 2))
    solo = Net([1])
    solo.campaign(1)
    with pytest.raises(ProposalDropped):
        solo.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))


def test_learner_gets_the_log_but_neither_votes_nor_counts():
    net = elected(check_quorum=False)
    add(net, 1, 4, ConfChangeType.ADD_LEARNER_NODE)
    assert net.conf[1] == ConfState((1, 2, 3), (4,))
    assert net.raft(4).is_learner
    net.propose(1, b"x")
    assert b"x" in net.values(4)
    # learner + leader are not a quorum
    net.isolate(2)
    net.isolate(3)
    net.cut -= {(1, 4), (4, 1)}
    net.propose(1, b"y")
    assert b"y" not in net.values(1)
    # a learner never campaigns
    net.heal()
    net.isolate(1)
    net.tick(4, 100)
    assert net.raft(4).role == Role.FOLLOWER and net.raft(4).term == net.raft(1).term


def test_learner_promotion_makes_it_a_voter():
    net = elected()
    add(net, 1, 4, ConfChangeType.ADD_LEARNER_NODE)
    add(net, 1, 4, ConfChangeType.ADD_NODE)
    assert net.conf[1] == ConfState((1, 2, 3, 4))
    assert not net.raft(4).is_learner and net.raft(4).promotable()
    net.nodes[1].transfer_leader(4)
    net.flush()
    assert net.leader() == 4


def test_joining_member_without_config_never_campaigns():
    net = elected()
    net.add(9)
    net.tick(9, 100)
    assert net.raft(9).role == Role.FOLLOWER and net.raft(9).term == 0


# -- the Ready contract ------------------------------------------------------------------

def test_ready_persists_before_send_and_must_sync():
    net = Net([1, 2, 3], pre_vote=False)
    rn = net.nodes[1]
    rn.campaign()
    rd = rn.ready()
    assert rd.hard_state == HardState(term=2, vote=1, commit=3)
    assert rd.must_sync and rd.soft_state.role == Role.CANDIDATE
    assert {m.to for m in rd.messages} == {2, 3}
    rn.advance(rd)
    assert not rn.has_ready()


def test_step_refuses_local_messages():
    net = Net([1])
    with pytest.raises(ValueError):
        net.nodes[1].step(Message(MT.HUP))


def test_follower_forwards_proposals_and_drops_without_leader():
    net = Net([1, 2, 3])
    with pytest.raises(ProposalDropped):
        net.nodes[2].propose(b"x")
    net.campaign(1)
    net.propose(2, b"y")
    assert b"y" in net.values(1)


def test_single_member_cluster_commits_alone():
    net = Net([1])
    net.campaign(1)
    net.propose(1, b"solo")
    assert net.values(1) == [b"solo"]
    net.nodes[1].read_index(b"r")
    net.flush()
    assert net.read_states[1][0].index == net.raft(1).log.committed


def test_status_reports_progress_on_the_leader():
    net = elected()
    st = net.nodes[1].status()
    assert st.role == Role.LEADER and st.lead == 1
    assert set(st.progress) == {1, 2, 3}
    assert st.progress[2].match == st.commit
    assert net.nodes[2].status().progress == {}


def test_stale_leader_steps_down_when_told_a_higher_term():
    net = elected(check_quorum=True, pre_vote=True)
    net.isolate(1)
    net.tick_all(40)
    new = net.leader()
    assert new in (2, 3) or net.raft(1).role == Role.FOLLOWER
    net.heal()
    net.tick_all(3)
    leaders = [i for i in net.nodes if net.raft(i).role == Role.LEADER]
    assert len(leaders) == 1


def test_entries_survive_restart_of_the_whole_cluster():
    net = elected()
    for i in range(3):
        net.propose(1, b"v%d" % i)
    for nid in (1, 2, 3):
        net.restart(nid)
    net.tick_all(40)
    lead = net.leader()
    net.propose(lead, b"again")
    for nid in (1, 2, 3):
        assert net.values(nid)[-4:] == [b"v0", b"v1", b"v2", b"again"]


def test_entry_data_is_opaque_bytes():
    e = Entry(1, 1, data=b"\x00\xff")
    assert e.data == b"\x00\xff"


def test_propose_batch_travels_in_one_append_per_follower():
    net = elected()
    net.delivered.clear()
    net.nodes[1].propose_batch([b"a", b"b", b"c"])
    net.flush()
    apps = [m for m in net.delivered if m.type == MT.APP and m.entries]
    assert len(apps) == 2 and all(len(m.entries) == 3 for m in apps)
    assert net.values(2)[-3:] == [b"a", b"b", b"c"]


def test_commit_only_append_already_acknowledged_gets_no_answer():
    net = elected()
    net.delivered.clear()
    net.propose(1, b"x")
    net.flush()
    resps = [m for m in net.delivered if m.type == MT.APP_RESP]
    # one answer per follower for the entry; the commit that follows is not answered
    assert sorted(m.from_ for m in resps) == [2, 3]
    assert all(m.index == net.raft(1).log.last_index() for m in resps)
    assert [net.raft(i).log.committed for i in (1, 2, 3)] == [net.raft(1).log.last_index()] * 3
    # the leader still learns what it must: a later entry is answered as before
    net.delivered.clear()
    net.propose(1, b"y")
    net.flush()
    assert sorted(m.from_ for m in net.delivered if m.type == MT.APP_RESP) == [2, 3]
    assert net.values(3)[-2:] == [b"x", b"y"]


def test_lost_acknowledgement_is_repaired_by_heartbeats():
    net = elected()
    lead = net.raft(1)
    lost = []

    def drop(m):    # the follower appends and answers, but its answer is lost
        if m.type == MT.APP_RESP and m.from_ == 2 and not lost:
            lost.append(m)
            return True
        return False
    net.drop = drop
    net.propose(1, b"x")
    last = lead.log.last_index()
    assert lost and lead.log.committed == last           # node 3 made the quorum
    assert lead.tracker.progress[2].match < last
    net.tick(1, lead.heartbeat_timeout)
    net.flush()
    assert lead.tracker.progress[2].match == last
    # and a leadership transfer to it still completes
    net.nodes[1].transfer_leader(2)
    net.flush()
    assert net.leader() == 2


def test_figure8_scenario_an_old_term_entry_on_a_majority_can_still_be_replaced():
    """Figure 8 (c)-(d) of the Raft paper, played out: S1 (term 4) gets its
    term-2 entry onto a majority but must not commit it, because S5 (holding
    a term-3 entry at that index) can still be elected and overwrite it."""
    voters = [1, 2, 3, 4, 5]
    storages = {
        1: storage_with_log(voters, [1, 2], term=3),
        2: storage_with_log(voters, [1], term=3),
        3: storage_with_log(voters, [1], term=3),
        4: storage_with_log(voters, [1], term=3),
        5: storage_with_log(voters, [1, 3], term=3),
    }
    net = Net(voters, bootstrap=False, storages=storages, max_size_per_msg=1,
              pre_vote=False, check_quorum=False)  # the paper's plain Raft
    # S1's appends reach only S2 and S3, and never carry its term-4 entry.
    net.drop = lambda m: m.type == MT.APP and (
        m.to in (4, 5) or (m.index >= 2 and net.raft(m.to).log.last_index() >= 2))
    net.campaign(1)
    assert net.leader() == 1 and net.raft(1).term == 4
    net.tick(1, 3)
    assert net.log_terms(2) == net.log_terms(3) == [(1, 1), (2, 2)]  # 2:2 is on S1-S3
    assert net.raft(1).tracker.progress[3].match == 2  # and S1 knows it
    assert net.raft(1).log.committed == 0  # ... and still not committed
    net.isolate(1)  # S1 "crashes"
    net.drop = None
    net.campaign(5)  # term 4: everyone already voted for S1
    net.campaign(5)  # term 5: S2, S3, S4 vote for S5 (last term 3 > 2)
    assert net.raft(5).term == 5
    assert net.leader() == 5 and net.raft(5).term == 5
    net.heal()
    net.tick(5)
    for nid in voters:
        assert net.log_terms(nid)[:3] == [(1, 1), (2, 3), (3, 5)]


def test_node_keeps_working_between_ready_and_advance():
    """A driver may apply a Ready in another task while it keeps stepping and
    proposing; what arrives meanwhile comes out in the next Ready."""
    net = elected()
    rn = net.nodes[1]
    rn.propose(b"a")
    rd = rn.ready()
    assert [e.data for e in rd.entries] == [b"a"]
    net.storage[1].append(rd.entries)
    rn.propose(b"b")  # before advance
    rn.advance(rd)
    rd2 = rn.ready()
    assert [e.data for e in rd2.entries] == [b"b"]
    assert {m.to for m in rd2.messages} == {2, 3}
    net.storage[1].append(rd2.entries)
    for m in rd.messages + rd2.messages:
        net.deliver(1, m)
    rn.advance(rd2)
    net.flush()
    assert net.values(2)[-2:] == [b"a", b"b"]


def test_restart_with_applied_past_the_snapshot_keeps_later_membership():
    net = elected()
    net.propose(1, b"a")
    compact(net, 2)
    add(net, 1, 4, ConfChangeType.ADD_LEARNER_NODE)
    net.propose(1, b"b")
    applied = net.raft(2).log.applied
    assert net.storage[2].snapshot().conf_state == ConfState((1, 2, 3))
    net.cfg["applied"] = applied
    net.restart(2)
    r = net.raft(2)
    assert r.log.applied == applied and net.nodes[2].ready().committed_entries == ()
    assert r.tracker.conf_state() == ConfState((1, 2, 3), (4,))
    net.cfg["applied"] = applied + 100  # beyond the persisted commit: capped
    net.restart(2)
    assert net.raft(2).log.applied == net.raft(2).log.committed
