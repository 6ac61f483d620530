"""Firewall generators: the effective matrix as nftables, iptables, NetworkPolicy, AWS rules."""
