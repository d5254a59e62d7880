"""Where training groups run: in this process (local) or as Ray tasks; fault injection for tests."""
