"""One module per tab: UI and event wiring only. Each exposes TAB_TITLE and build()."""
