"""Studies of the method beyond the main table: the controlled-geometry world (``geometry``)."""
