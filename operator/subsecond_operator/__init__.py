"""The LatencySLO operator: keeps a workload inside its latency objective by setting its replica count.

Pure core (``spec``, ``queueing``, ``decision``) and an I/O shell (``prometheus``, ``kube``, ``handlers``).
"""
