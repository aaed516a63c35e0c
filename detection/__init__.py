"""How fast the alerts fire, measured on traffic sampled from the real service: `traffic` samples minutes of
it, `simulate` replays them through the rules with promtool and writes the table of docs/detection.md.
"""
