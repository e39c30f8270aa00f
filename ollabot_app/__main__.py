"""``python -m ollabot_app``: the same as the ``ollabot`` command."""

from ollabot_app.cli import main

raise SystemExit(main())
