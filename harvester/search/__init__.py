"""Search: the queries file and its source lines, date windows, the window planner, the search
loop and the list walk."""
