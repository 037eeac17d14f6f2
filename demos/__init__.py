"""One module per tab: UI and event wiring only. The interface every tab module has: demos/common.py."""
