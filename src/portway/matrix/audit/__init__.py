"""``portway audit``: prove a live deployment against the matrix from where the audit runs."""
