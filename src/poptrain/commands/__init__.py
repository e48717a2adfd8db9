"""Sub-commands of the ``poptrain`` command, one module each (``register(subparsers)``)."""
