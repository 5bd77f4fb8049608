"""The tools at the edge: demo, drill (chaos), bench, fuzz, scale, and the servers and processes they start."""
