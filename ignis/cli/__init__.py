"""The `ignis` command line: `common` (what every command shares), one module per command
group (models, compiler, machine, run, chat, serve, perplexity) and `main` (the command table)."""
from ignis.cli.main import main

__all__ = ["main"]
