"""`python -m crisislens.runtime` = the `crisislens` command."""

import sys

from crisislens.runtime.cli import main

sys.exit(main())
