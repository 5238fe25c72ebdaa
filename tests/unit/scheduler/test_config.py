"""KubeSchedulerConfiguration profiles: defaults, merging, aliases, plugin args."""
from __future__ import annotations

import pytest

from kcore.scheduler import ConfigError, load_config


def names(profile):
    return [f.name for f in profile.filters], {p.name: w for p, w in profile.scores}


def test_defaults():
    (p,) = load_config(None).profiles
    filters, scores = names(p)
    assert filters == ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                       "NodePorts", "NodeResourcesFit"]
    assert scores == {"TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesFit": 1,
                      "NodeResourcesBalancedAllocation": 1}
    assert p.percentage_of_nodes_to_score == 100
    assert p.scheduler_name == "default-scheduler"


def test_yaml_with_seed_aliases_and_args():
    cfg = load_config("""
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 50
profiles:
- schedulerName: bin-packer
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled:
      - {name: MostRequestedPriority, weight: 5}
      - {name: BalancedResourceAllocation, weight: 2}
      - {name: CalculateNodeLabelPriority, weight: 3}
  pluginConfig:
  - name: CalculateNodeLabelPriority
    args: {presentLabelsPreference: [ssd]}
- schedulerName: spreader
  percentageOfNodesToScore: 100
  plugins:
    filter:
      disabled: [{name: NodePorts}]
    score:
      enabled: [{name: LeastRequestedPriority, weight: 4}]
""")
    packer, spreader = cfg.profiles
    assert names(packer)[1] == {"NodeResourcesFit": 5, "NodeResourcesBalancedAllocation": 2,
                                "NodeLabel": 3}
    assert packer.plugin("NodeResourcesFit").strategy == "MostAllocated"
    assert packer.plugin("NodeLabel").present_pref == ("ssd",)
    assert packer.percentage_of_nodes_to_score == 50
    filters, scores = names(spreader)
    assert "NodePorts" not in filters
    assert scores["NodeResourcesFit"] == 4 and scores["TaintToleration"] == 3
    assert spreader.plugin("NodeResourcesFit").strategy == "LeastAllocated"
    assert spreader.percentage_of_nodes_to_score == 100
    assert cfg.profile("spreader") is spreader


def test_multipoint_and_resources():
    cfg = load_config({"profiles": [{
        "plugins": {"multiPoint": {"enabled": [{"name": "NodeLabel", "weight": 2}]}},
        "pluginConfig": [
            {"name": "NodeLabel", "args": {"presentLabels": ["zone"]}},
            {"name": "NodeResourcesFit", "args": {"scoringStrategy": {
                "resources": [{"name": "cpu", "weight": 2}, {"name": "nvidia.com/gpu",
                                                            "weight": 3}]}}}]}]})
    (p,) = cfg.profiles
    filters, scores = names(p)
    assert filters[-1] == "NodeLabel" and scores["NodeLabel"] == 2
    assert p.plugin("NodeResourcesFit").resources == (("cpu", 2), ("nvidia.com/gpu", 3))


@pytest.mark.parametrize("doc", [
    {"profiles": [{"plugins": {"score": {"enabled": [{"name": "NoSuchPlugin"}]}}}]},
    {"profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
        "scoringStrategy": {"type": "RequestedToCapacityRatio"}}}]}]},
    {"profiles": [{}, {}]},
    {"kind": "Policy"},
    {"profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
        "scoringStrategy": {"resources": [{"name": "cpu", "weight": 101}]}}}]}]},
    {"percentageOfNodesToScore": 101},
])
def test_errors(doc):
    with pytest.raises(ConfigError):
        load_config(doc)
