"""Pure, vectorised analytics: triple-barrier P&L, excursions and the fee model."""
