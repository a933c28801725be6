"""The ``edgetran`` command line: one module per command or command group."""
