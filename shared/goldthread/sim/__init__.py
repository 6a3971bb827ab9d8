"""Simulation: a trading bot and broker that exercise every path of the pipeline."""
