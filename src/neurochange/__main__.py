"""``python -m neurochange``: the command line."""

from neurochange.cli import main

main()
