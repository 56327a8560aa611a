"""One module per ``embserve-hil`` subcommand; each defines ``register(subparsers)``."""
