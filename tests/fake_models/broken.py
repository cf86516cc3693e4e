"""A model whose import fails, as a broken plugin would."""

import this_module_does_not_exist  # noqa: F401
