"""The fast scheduler and the pure-Python reference make identical decisions.

Hypothesis builds clusters (capacities, labels, taints, cordons, extended
resources) and event sequences (batches of pods from a few templates so that
shapes recur, deletions, failed binds, confirmations, node updates, node
additions and removals), feeds both schedulers the same events and compares
every decision — node and FailedScheduling message — and the per-node usage
at the end. The fast scheduler runs in several modes (cache at once, cache on
second sight, never cache, always replay / always rebuild) which must not
change any decision.
"""
from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcore.scheduler import ReferenceScheduler, Scheduler, load_config
from kcore.scheduler.nodetable import NZ_CPU, NZ_MEM, POD_CNT, req_row

from .conftest import FULL, make_node

EXAMPLES = 1500 if FULL else 60
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=not FULL,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

LABELS = {"zone": ["a", "b", "c"], "disk": ["ssd", "hdd"], "num": ["1", "5", "10", "x", "-3"],
          "gpu": ["true"]}
TAINTS = [("k1", "v1", "NoSchedule"), ("k1", "v2", "NoExecute"), ("k2", "", "PreferNoSchedule"),
          ("k3", "v", "NoSchedule"), ("k4", "x", "PreferNoSchedule"),
          ("node.kubernetes.io/unschedulable", "", "NoSchedule")]
CPU = ["0", "500m", "1", "2", "3500m", "4", "8", "8", "16", "16"]
MEM = ["0", "512Mi", "1Gi", "2Gi", "3G", "4Gi", "8Gi", "16Gi", "16Gi"]
POD_CPU = [None, "0", "50m", "100m", "250m", "1", "1500m"]
POD_MEM = [None, "0", "64Mi", "200Mi", "300Mi", "1Gi"]

CONFIGS = [
    None,
    {"profiles": [{"plugins": {"score": {"enabled": [
        {"name": "LeastRequestedPriority", "weight": 2},
        {"name": "CalculateNodeLabelPriority", "weight": 3},
        {"name": "TaintToleration", "weight": 1}]}},
        "pluginConfig": [{"name": "CalculateNodeLabelPriority",
                          "args": {"presentLabelsPreference": ["zone"],
                                   "absentLabelsPreference": ["gpu"]}}]}]},
    {"profiles": [{"plugins": {"score": {"disabled": [{"name": "*"}], "enabled": [
        {"name": "NodeResourcesFit", "weight": 1},
        {"name": "NodeAffinity", "weight": 5}]}},
        "pluginConfig": [{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
            "type": "MostAllocated",
            "resources": [{"name": "cpu", "weight": 3}, {"name": "memory", "weight": 1},
                          {"name": "example.com/gpu", "weight": 2}]}}}]}]},
    {"profiles": [{"plugins": {
        "filter": {"disabled": [{"name": "TaintToleration"}, {"name": "NodePorts"}],
                   "enabled": [{"name": "NodeLabel"}]},
        "score": {"enabled": [{"name": "BalancedResourceAllocation", "weight": 4}]}},
        "pluginConfig": [
            {"name": "NodeLabel", "args": {"absentLabels": ["gpu"]}},
            {"name": "NodeResourcesBalancedAllocation", "args": {"resources": [
                {"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1},
                {"name": "example.com/gpu", "weight": 1}]}}]}]},
    {"profiles": [{"plugins": {"filter": {"disabled": [{"name": "NodeResourcesFit"}]}}}]},
]

MODES = [
    {"cache_after": 1},
    {"cache_after": 2},
    {"cache": False},
    {"cache_after": 1, "replay_fraction": 1e9},
    {"cache_after": 1, "replay_fraction": 0.0},
    {"cache_after": 1, "max_cached": 1},
]


@st.composite
def nodes(draw, names):
    out = []
    for name in names:
        labels = {k: draw(st.sampled_from(v)) for k, v in LABELS.items() if draw(st.booleans())}
        taints = []
        seen = set()
        for key, value, effect in draw(st.lists(st.sampled_from(TAINTS), max_size=3)
                                       if draw(st.integers(0, 3)) == 0 else st.just([])):
            if (key, effect) not in seen:
                seen.add((key, effect))
                taints.append({"key": key, "value": value, "effect": effect})
        extra = {}
        gpu = draw(st.sampled_from([None, None, "0", "1", "2"]))
        if gpu is not None:
            extra["example.com/gpu"] = gpu
        if draw(st.booleans()):
            extra["ephemeral-storage"] = draw(st.sampled_from(["1Gi", "10Gi"]))
        out.append(make_node(name, cpu=draw(st.sampled_from(CPU + [None])),
                             memory=draw(st.sampled_from(MEM)),
                             pods=draw(st.sampled_from(["0", "1", "2", "3", "5", "8", "110",
                                                        "110", "110", "110"])),
                             labels=labels, taints=taints,
                             unschedulable=draw(st.integers(0, 14)) == 0, extra=extra))
    return out


requirement = st.one_of(
    st.builds(lambda k, vs, op: {"key": k, "operator": op, "values": vs},
              st.sampled_from(list(LABELS)), st.lists(st.sampled_from(
                  ["a", "b", "c", "ssd", "hdd", "1", "x", "true"]), min_size=1, max_size=3),
              st.sampled_from(["In", "NotIn"])),
    st.builds(lambda k, op: {"key": k, "operator": op}, st.sampled_from(list(LABELS)),
              st.sampled_from(["Exists", "DoesNotExist"])),
    st.builds(lambda v, op: {"key": "num", "operator": op, "values": [v]},
              st.sampled_from(["0", "4", "9", "-5"]), st.sampled_from(["Gt", "Lt"])),
    st.builds(lambda v, op: {"key": "num", "operator": op, "values": v},
              st.sampled_from([[], ["a"], ["1", "2"]]), st.sampled_from(["Gt", "Exists"])),
)
field_req = st.builds(lambda v, op: {"key": "metadata.name", "operator": op, "values": [v]},
                      st.sampled_from(["n0", "n1", "n3", "zz"]), st.sampled_from(["In", "NotIn"]))
term = st.builds(lambda e, f: {**({"matchExpressions": e} if e else {}),
                               **({"matchFields": f} if f else {})},
                 st.lists(requirement, max_size=2), st.lists(field_req, max_size=1))
toleration = st.sampled_from([
    {"key": "k1", "operator": "Equal", "value": "v1", "effect": "NoSchedule"},
    {"key": "k1", "operator": "Exists"},
    {"key": "k2", "operator": "Exists", "effect": "PreferNoSchedule"},
    {"key": "k3", "value": "v"},
    {"operator": "Exists"},
    {"key": "k4", "operator": "Equal", "value": "x"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
])


@st.composite
def templates(draw):
    def container():
        req = {}
        c = draw(st.sampled_from(POD_CPU))
        m = draw(st.sampled_from(POD_MEM))
        if c is not None:
            req["cpu"] = c
        if m is not None:
            req["memory"] = m
        if draw(st.integers(0, 4)) == 0:
            req["example.com/gpu"] = draw(st.sampled_from(["1", "2"]))
        if draw(st.integers(0, 6)) == 0:
            req["ephemeral-storage"] = "2Gi"
        out = {"name": "c", "resources": {"requests": req}}
        if draw(st.integers(0, 5)) == 0:
            out["ports"] = [draw(st.sampled_from([
                {"containerPort": 80, "hostPort": 80},
                {"containerPort": 80, "hostPort": 80, "protocol": "UDP"},
                {"containerPort": 443, "hostPort": 443, "hostIP": "127.0.0.1"},
                {"containerPort": 443, "hostPort": 443},
                {"containerPort": 8080}]))]
        return out

    spec = {"containers": [container() for _ in range(draw(st.integers(1, 2)))]}
    if draw(st.booleans()):      # half the templates are plain pods: requests only
        c = spec["containers"][0]
        c.pop("ports", None)
        c["resources"]["requests"].pop("example.com/gpu", None)
        c["resources"]["requests"].pop("ephemeral-storage", None)
        return {"containers": [c]}
    if draw(st.integers(0, 5)) == 0:
        spec["initContainers"] = [dict(container(), name="init")]
    if draw(st.integers(0, 5)) == 0:
        spec["nodeSelector"] = {k: draw(st.sampled_from(LABELS[k]))
                                for k in draw(st.lists(st.sampled_from(["zone", "disk"]),
                                                       min_size=1, max_size=2, unique=True))}
    aff = {}
    if draw(st.integers(0, 5)) == 0:
        aff["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": draw(st.lists(term, min_size=1, max_size=2))}
    if draw(st.integers(0, 2)) == 0:
        aff["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": draw(st.integers(1, 100)), "preference": draw(term)}
            for _ in range(draw(st.integers(1, 3)))]
    if aff:
        spec["affinity"] = {"nodeAffinity": aff}
    if draw(st.booleans()):
        spec["tolerations"] = draw(st.lists(toleration, max_size=3))
    if draw(st.integers(0, 9)) == 0:
        spec["preemptionPolicy"] = "Never"
    if draw(st.integers(0, 9)) == 0:
        spec["overhead"] = {"cpu": "10m"}
    return spec


@st.composite
def op(draw):
    kind = draw(st.sampled_from(["schedule"] * 6 + ["delete", "forget", "confirm", "bound",
                                                    "node_update", "node_add", "node_delete"]))
    a, b = draw(st.integers(0, 2**16)), draw(st.integers(0, 2**16))
    if kind == "schedule":
        return (kind, a % 4, 1 + b % 6)
    if kind == "bound":
        return (kind, a % 4, b)
    return (kind, a, b)


def usage_of(fast: Scheduler) -> dict:
    t = fast.table
    t.prepare()
    out = {}
    for r in range(t.n):
        req = {name: int(t.cols[req_row(i), r]) for i, name in enumerate(t.resources)
               if t.cols[req_row(i), r]}
        out[t.names[r]] = (req, int(t.cols[NZ_CPU, r]), int(t.cols[NZ_MEM, r]),
                           int(t.cols[POD_CNT, r]))
    return out


def usage_ref(ref: ReferenceScheduler) -> dict:
    return {name: (ni.requested, ni.nonzero_cpu, ni.nonzero_memory, ni.pod_count)
            for name, ni in ref.node_infos().items()}


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 12))
    names = [f"n{i}" for i in range(n)]
    return {
        "nodes": draw(nodes(names)),
        "templates": draw(st.lists(templates(), min_size=4, max_size=4)),
        "ops": draw(st.lists(op(), min_size=3, max_size=30)),
        "config": draw(st.sampled_from(range(len(CONFIGS)))),
        "mode": draw(st.sampled_from(range(len(MODES)))),
        "seed": draw(st.integers(0, 2**64 - 1)),
        "extra_nodes": draw(nodes([f"m{i}" for i in range(3)])),
    }


def run(sc: dict) -> None:
    cfg = load_config(CONFIGS[sc["config"]])
    fast = Scheduler(cfg, seed=sc["seed"], **MODES[sc["mode"]])
    ref = ReferenceScheduler(cfg, seed=sc["seed"])
    both = (fast, ref)
    live = {node["metadata"]["name"]: node for node in sc["nodes"]}
    for node in sc["nodes"]:
        for s in both:
            s.add_node(copy.deepcopy(node))
    placed: list[tuple[dict, str]] = []     # (pod, node)
    serial = 0
    for step, o in enumerate(sc["ops"]):
        kind = o[0]
        if kind == "schedule":
            pods = []
            for _ in range(o[2]):
                serial += 1
                pods.append({"metadata": {"name": f"p{serial}", "namespace": "ns",
                                          "uid": f"u{serial}"},
                             "spec": copy.deepcopy(sc["templates"][o[1]])})
            if o[2] == 5 and placed:          # reschedule a known pod within the batch
                pods.insert(1, placed[-1][0])
            got = fast.schedule_many(pods)
            want = [ref.schedule(p) for p in pods]
            assert got == want, f"step {step}: {o}"
            placed += [(p, d.node) for p, d in zip(pods, got) if d.node]
        elif kind in ("delete", "forget", "confirm") and placed:
            pod, node = placed[o[1] % len(placed)]
            if kind == "delete":
                for s in both:
                    s.delete_pod(pod)
            elif kind == "forget":
                for s in both:
                    s.forget(pod)
            else:
                bound = copy.deepcopy(pod)
                bound["spec"]["nodeName"] = node
                for s in both:
                    s.add_pod(bound)
        elif kind == "bound" and live:
            serial += 1
            name = sorted(live)[o[2] % len(live)]
            pod = {"metadata": {"name": f"b{serial}", "namespace": "ns", "uid": f"b{serial}"},
                   "spec": dict(copy.deepcopy(sc["templates"][o[1]]), nodeName=name)}
            for s in both:
                s.add_pod(pod)
        elif kind == "node_update" and live:
            name = sorted(live)[o[1] % len(live)]
            donor = sc["extra_nodes"][o[2] % len(sc["extra_nodes"])]
            node = copy.deepcopy(donor)
            node["metadata"]["name"] = name
            if o[2] & 1:   # sometimes only allocatable changes
                node["metadata"]["labels"] = live[name]["metadata"]["labels"]
                node["spec"] = live[name]["spec"]
            live[name] = node
            for s in both:
                s.update_node(copy.deepcopy(node))
        elif kind == "node_add":
            donor = sc["extra_nodes"][o[1] % len(sc["extra_nodes"])]
            node = copy.deepcopy(donor)
            node["metadata"]["name"] = f"a{o[1] % 7}"
            live[node["metadata"]["name"]] = node
            for s in both:
                s.add_node(copy.deepcopy(node))
        elif kind == "node_delete" and live:
            name = sorted(live)[o[1] % len(live)]
            del live[name]
            for s in both:
                s.delete_node(name)
    assert usage_of(fast) == usage_ref(ref)
    assert fast.draws == ref.draws


@SETTINGS
@given(scenarios())
def test_fast_and_reference_agree(sc):
    run(sc)


def test_many_ties_and_recurring_shapes():
    """A homogeneous cluster: every cycle has many tied nodes, shapes recur in
    long batches (the tree path) and interleave (the replay path)."""
    from .conftest import make_pod
    for mode in MODES:
        fast = Scheduler(seed=11, **mode)
        ref = ReferenceScheduler(seed=11)
        for i in range(40):
            node = make_node(f"node-{i:03d}", cpu="4", memory="8Gi", pods="20",
                             labels={"zone": "abc"[i % 3]})
            fast.add_node(node)
            ref.add_node(node)
        shapes = [("100m", "128Mi"), ("250m", "256Mi"), (None, None), ("1", "1Gi")]
        serial = 0
        for rnd in range(6):
            batch = []
            for k, (c, m) in enumerate(shapes):
                for _ in range(5 + 3 * k + rnd):
                    serial += 1
                    batch.append(make_pod(f"p{serial}", c, m))
            if rnd % 2:
                batch.sort(key=lambda p: p["metadata"]["name"][-1])
            got = fast.schedule_many(batch)
            want = [ref.schedule(p) for p in batch]
            assert got == want
            for p in batch[::7]:
                fast.delete_pod(p)
                ref.delete_pod(p)
        assert usage_of(fast) == usage_ref(ref)


def test_sampling_matches_reference():
    """percentageOfNodesToScore < 100 (needs >= 100 nodes): the same sample, rotation and pick."""
    from .conftest import make_pod
    cfg = load_config({"percentageOfNodesToScore": 30})
    fast = Scheduler(cfg, seed=3)
    ref = ReferenceScheduler(cfg, seed=3)
    for i in range(130):
        node = make_node(f"node-{i:03d}", cpu=str(1 + i % 4), memory="8Gi", pods="10",
                         taints=[{"key": "k", "value": "", "effect": "NoSchedule"}]
                         if i % 5 == 0 else [])
        fast.add_node(node)
        ref.add_node(node)
    for i in range(120):
        pod = make_pod(f"p{i}", ["100m", "500m", "2"][i % 3], "64Mi")
        assert fast.schedule(pod) == ref.schedule(pod)
    assert fast.next_start == ref.next_start


def test_recurring_shapes_random():
    """Seeded random rounds over a mid-sized cluster: interleaved batches of
    recurring shapes with affinity preferences and PreferNoSchedule taints
    (normalisation maxima that move when nodes fill up), pod deletions,
    failed binds and allocatable changes between rounds."""
    import random

    from .conftest import make_pod
    rnd = random.Random(5)
    base_nodes = []
    for i in range(30):
        labels = {"zone": rnd.choice("abc")}
        if rnd.random() < 0.3:
            labels["disk"] = "ssd"
        taints = [{"key": "soft", "value": str(rnd.randint(0, 1)), "effect": "PreferNoSchedule"}
                  ] if rnd.random() < 0.4 else []
        base_nodes.append(make_node(f"w{i:02d}", cpu=rnd.choice(["2", "4", "8"]),
                                    memory=rnd.choice(["4Gi", "8Gi"]), pods=rnd.choice(
                                        ["6", "10", "110"]), labels=labels, taints=taints))
    pref = lambda w, k, v: {"weight": w, "preference": {
        "matchExpressions": [{"key": k, "operator": "In", "values": [v]}]}}
    shapes = [
        {"cpu": "200m", "memory": "256Mi"},
        {"cpu": "500m", "memory": "1Gi",
         "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
             pref(10, "disk", "ssd"), pref(3, "zone", "a")]}}},
        {"cpu": "1", "memory": "512Mi",
         "tolerations": [{"key": "soft", "operator": "Equal", "value": "0"}]},
        {"cpu": None, "memory": None},
        {"cpu": "300m", "memory": "300Mi",
         "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
             pref(50, "zone", "c")]}}},
    ]
    for mode in MODES:
        fast = Scheduler(seed=99, **mode)
        ref = ReferenceScheduler(seed=99)
        for node in base_nodes:
            fast.add_node(node)
            ref.add_node(node)
        live = []
        serial = 0
        r = random.Random(17)
        for _round in range(14):
            batch = []
            for _run in range(r.randint(2, 6)):
                sh = dict(r.choice(shapes))
                c, m = sh.pop("cpu"), sh.pop("memory")
                for _ in range(r.randint(1, 12)):
                    serial += 1
                    batch.append(make_pod(f"p{serial}", c, m, **sh))
            got = fast.schedule_many(batch)
            want = [ref.schedule(p) for p in batch]
            assert got == want
            live += [p for p, d in zip(batch, got) if d.node]
            for _ in range(r.randint(0, 8)):
                if not live:
                    break
                p = live.pop(r.randrange(len(live)))
                action = r.choice(["delete", "forget"])
                for s in (fast, ref):
                    getattr(s, "delete_pod" if action == "delete" else "forget")(p)
            if r.random() < 0.3:
                node = dict(r.choice(base_nodes))
                node["status"] = {"allocatable": dict(node["status"]["allocatable"],
                                                      cpu=r.choice(["1", "16"]))}
                fast.update_node(node)
                ref.update_node(node)
        assert usage_of(fast) == usage_ref(ref)


def test_many_taints_dropped_log_and_repeated_pods(monkeypatch):
    """Taint bitsets wider than one word, a change log short enough to be
    dropped (cached shapes then rebuild), and a batch naming the same pod twice."""
    import random

    from kcore.scheduler.nodetable import NodeTable

    from .conftest import make_pod
    monkeypatch.setattr(NodeTable, "LOG_KEEP", 8)
    monkeypatch.setattr(NodeTable, "LOG_PER_NODE", 1)
    rnd = random.Random(3)
    nodes = []
    for i in range(24):
        taints = [{"key": f"t{(i * 7 + j) % 90}", "value": str(j % 2),
                   "effect": ["NoSchedule", "PreferNoSchedule"][j % 2]} for j in range(6)]
        nodes.append(make_node(f"n{i:02d}", cpu="8", pods="40", taints=taints))
    fast = Scheduler(seed=4, cache_after=1)
    ref = ReferenceScheduler(seed=4)
    for n in nodes:
        fast.add_node(n)
        ref.add_node(n)
    assert len(fast.table.taints) > 64
    tol = [{"key": f"t{k}", "operator": "Exists"} for k in range(0, 90, 1) if k % 3]
    shapes = [{"tolerations": tol}, {"tolerations": tol[:40]},
              {"tolerations": [{"operator": "Exists", "effect": "NoSchedule"}]}]
    serial = 0
    for _round in range(10):
        batch = []
        for _ in range(rnd.randint(1, 4)):
            extra = rnd.choice(shapes)
            for _ in range(rnd.randint(1, 15)):
                serial += 1
                batch.append(make_pod(f"p{serial}", "100m", "64Mi", **extra))
        batch.append(batch[0])                 # the same pod again, later in the batch
        assert fast.schedule_many(batch) == [ref.schedule(p) for p in batch]
    assert fast.table.log_base > 0
    assert usage_of(fast) == usage_ref(ref)
