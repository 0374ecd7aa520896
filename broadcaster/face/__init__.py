"""The face: avatar assets, idle motion and the compositor that draws each program frame."""
