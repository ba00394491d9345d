"""nade-report: a sweep's run dirs read back as records (``records``), aggregated over seeds
(``aggregate``), plotted (``plots``) and rendered from one document model to HTML and markdown
(``render``); ``build`` chains them and ``cli`` parses the command line. What a run itself
writes for the report (``profiles.json``, the W&B tables) is ``nade_jax.run.dashboard``."""
