"""`python -m tether.cli`, the same as the `tether` script."""

from . import main

main()
