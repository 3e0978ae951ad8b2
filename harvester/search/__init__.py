"""Search: the queries file, date windows, the window planner and the search loop."""
