"""The real kernel as the oracle: the simulator's cluster built in Linux namespaces.

`dataplane verify FILE...` (and `verify(scenario)`) builds a scenario's cluster on this
machine's kernel from the very fabric the simulator walks, runs every probe as real
traffic, and puts both verdicts side by side.

- `netns`: named namespaces made and entered by one thread (`unshare`, `setns`), sysctls,
  a conntrack flush, the run id every name starts with;
- `build`: `KernelCluster`, the fabric in namespaces with pyroute2 (veths, bridges with
  hairpin ports, VXLAN with its FDB, routes, permanent neighbours, MTUs);
- `flanneld`: flanneld's vxlan and host-gw backend rules applied to the node leases;
- `cniplugins`: the flannel profiles' pods attached by the upstream CNI plugins
  (bridge + host-local as flannel delegates them, portmap), CNI ADD and DEL;
- `nft`, `services`, `policies`: kube-proxy, masquerade and NetworkPolicy as nftables
  rules generated from the model;
- `probe`, `send`, `dns`: listeners, probing clients, crafted packets and their sniffed
  answers, kube-dns; what a socket learns, in verdict words;
- `live`: `LiveCluster`, a built cluster that follows the scenario's changes;
- `verify`, `report`: the side-by-side comparison; `preflight`: can it run here?
"""
