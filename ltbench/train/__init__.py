"""Training: schedules, the stage-1 trainer (SGD / SWA + SWAG moments), classifier re-training helpers."""
