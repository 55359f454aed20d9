"""`python -m cli`: the same as the `tokenlearner` command."""
import sys

from cli import main

sys.exit(main())
