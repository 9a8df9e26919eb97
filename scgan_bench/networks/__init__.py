"""Network definitions written for this project (official weight layouts)."""
