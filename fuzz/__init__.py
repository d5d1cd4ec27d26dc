"""Long-running property checks (hypothesis with large example counts).

Each module is runnable: `python -m fuzz.passes --examples 20000`. The same checks
run in tests/ with small example counts. See fuzz/README.md."""
