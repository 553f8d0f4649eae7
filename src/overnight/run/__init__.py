"""The write side of one run: its folder, ledger and state, the controller and its workers' loop."""
