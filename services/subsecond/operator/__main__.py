"""``python -m subsecond.operator``: run the LatencySLO operator (kopf, standalone)."""

from subsecond.operator.main import main

main()
