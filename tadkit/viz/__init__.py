"""tadkit.viz"""
