"""``python -m workbench.cli`` (how ``workbench up`` starts its host)."""
import sys

from workbench.cli import main

sys.exit(main())
