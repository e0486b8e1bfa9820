"""Sub-commands of the `foundry` CLI, one module each."""
