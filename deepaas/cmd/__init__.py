"""Console scripts: each ``main(argv=None) -> int`` is a plain function."""

import sys


def fail(prog: str, message: str, code: int = 1) -> int:
    """Print the one-line error every console script ends with; return ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code
