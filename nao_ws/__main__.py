"""``python -m nao_ws ...``: the ``nao-ws`` command."""
from .cli import main

main()
