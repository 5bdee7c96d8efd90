"""`caviar serve`: a live web dashboard of every sweep under a storage root.

`caviar.dashboard.data` reads the run directories (no web framework, no Ray);
`caviar.dashboard.server` serves pages from ``static/`` and the JSON API they poll.
"""
