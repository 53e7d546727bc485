"""``python -m coralx`` is the ``coralx`` command."""

from coralx.cli.main import main

main()
