"""Linear layers behind one spec: dense, low-rank and sine low-rank."""
