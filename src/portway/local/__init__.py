"""``portway up``: the whole platform on one machine, on its embedded defaults."""
