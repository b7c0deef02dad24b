"""Partition algorithms: place the VMs of a scenario on cluster hosts."""
