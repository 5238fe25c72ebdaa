"""kcore proxy: what makes Services carry traffic on a node (iptables rules,
kernel IPVS, and a userspace IPVS dispatcher)."""
