"""The integer golden model: the specification every RTL block is tested against."""
