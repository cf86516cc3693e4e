"""Console scripts: each ``main(argv=None) -> int`` is a plain function."""
