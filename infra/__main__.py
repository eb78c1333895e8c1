"""Entry point for ``pulumi up`` (Pulumi.yaml: ``main: infra/``): runs ``infra.program.main``."""

import sys
from pathlib import Path

# The Python language host runs this folder as a script, with only infra/ itself on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import main

main()
