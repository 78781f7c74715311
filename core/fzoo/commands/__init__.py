"""The ``fzoo`` commands, one module per command or group of commands.

``fzoo.cli`` builds the parser and imports a command's module only when that command runs, so
``fzoo list`` never pays for ``fzoo run``. Each module holds the ``cmd_<name>(args) -> int``
functions of its commands and their private helpers; the work itself lives on a lower floor
(``fzoo.launder`` for ``fzoo launder``, ``fzoo.experiment`` for ``fzoo run``). Shared helpers:
:mod:`fzoo.commands._common` (exit codes, output, ``--param``/``--set`` values, image paths) and
:mod:`fzoo.commands._args` (argument types and arguments several sub-parsers share).

Modules here import only the standard library at module level; everything else is imported
inside the function that needs it (``tests/test_startup.py``).
"""
