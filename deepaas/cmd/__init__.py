"""Console scripts: each ``main(argv=None) -> int`` is a plain function."""

import sys


class OptionsError(Exception):
    """Options that cannot work together, found after start-up began: the
    console script reports them as a usage error (exit status 2)."""


def fail(prog: str, message: str, code: int = 1) -> int:
    """Print the one-line error every console script ends with; return ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
