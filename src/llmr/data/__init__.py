"""The data contract (records, pool items, candidate lists), its files, and building it from task rows."""
