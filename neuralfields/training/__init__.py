"""Run folders, checkpoints and the NeRF / occupancy trainers."""
