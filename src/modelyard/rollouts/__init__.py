"""Experiments and rollouts: the statistics that judge them, their definitions, the controller that drives them."""
