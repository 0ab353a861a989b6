"""``python -m tiny_listener`` is the ``tiny-listener`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="tiny-listener")
