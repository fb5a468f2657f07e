"""Train state, optimizer, pure train step and the training loop."""
