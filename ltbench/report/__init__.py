"""Reports: reliability plots, tables, comparisons with published baselines, the leaderboard."""
