"""The ``inferwatch`` command line; each subcommand is a module listed in ``main.COMMANDS``."""
