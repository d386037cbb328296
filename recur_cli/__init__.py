"""The `recur` command's pieces: exit codes, output, the API client, and one module per
command group (`cli.py` assembles them into the `recur` app)."""
