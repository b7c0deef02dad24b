"""ediv: distributed deployment of VNUML network-emulation scenarios."""

__version__ = "0.1.0"
