"""For support staff: one user's or one message's story (diagnose), test pushes, and the weekly report."""
