"""``python -m subsecond_operator``: run the LatencySLO operator (kopf, standalone)."""

from subsecond_operator.main import main

main()
