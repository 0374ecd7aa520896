"""The program clock, the render loop and the outputs that carry the program away."""
