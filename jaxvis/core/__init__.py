"""The bottom layer: errors, pieces-as-data (`structure`), compiled programs kept across processes (`programs`,
`compilation_cache`, `cache_dirs`), run state and checkpoints, progress bars.  Imports nothing else of jaxvis."""
