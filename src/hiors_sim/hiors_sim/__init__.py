"""MuJoCo simulated arm with cameras, peg-in-hole task, and a scripted expert (simulated human)."""
