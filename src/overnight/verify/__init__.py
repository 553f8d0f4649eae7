"""`overnight verify`: the run's keeps measured again at scale (arms), and what the measurements show (findings)."""
